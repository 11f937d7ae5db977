-- Promotions one at a time.
SELECT pg_advisory_xact_lock(hashtext('fleet_analytics.models'))
