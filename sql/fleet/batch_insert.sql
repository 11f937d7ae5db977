-- Record a log request before its rows, in the same transaction. No row comes back when the host
-- already sent a batch with this idempotency key: the batch is stored, nothing is written again.
INSERT INTO ingest_batches (host_id, idempotency_key, log_type, items, body_bytes)
VALUES (%(host_id)s, %(idempotency_key)s, %(log_type)s, %(items)s, %(body_bytes)s)
ON CONFLICT (host_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;
