-- Retention of what is not partitioned: ingest batches received before a time, and with them (ON DELETE
-- CASCADE) their results, status lines and quarantined items. Flows have their own day partitions.
DELETE FROM ingest_batches WHERE received_at < %(before)s;
