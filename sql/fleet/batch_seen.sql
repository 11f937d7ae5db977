-- Whether the host already sent a batch with this idempotency key (checked before the batch is parsed;
-- batch_insert.sql stays the guard against a concurrent retry).
SELECT 1 FROM ingest_batches WHERE host_id = %(host_id)s AND idempotency_key = %(idempotency_key)s;
