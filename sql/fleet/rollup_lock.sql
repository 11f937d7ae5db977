-- One rollup at a time (the sums are upserts: two at once could deadlock); the lock ends with the
-- transaction. False: another rollup runs now, and will take the batches.
SELECT pg_try_advisory_xact_lock(hashtext('fleet_analytics.rollup'))
