-- Result batches with flow rows not scored yet, oldest first; locked so that two workers take
-- different ones (a batch another worker is scoring is skipped, not waited for).
SELECT b.id, b.host_id, b.flow_window_min, b.flow_window_max, b.flow_rows
FROM ingest_batches b
WHERE b.flow_rows > 0
  AND b.received_at >= now() - make_interval(hours => %(lookback_hours)s)
  AND (%(batch_ids)s::bigint[] IS NULL OR b.id = ANY(%(batch_ids)s::bigint[]))
  AND NOT EXISTS (SELECT 1 FROM scored_batches s WHERE s.batch_id = b.id)
ORDER BY b.id
LIMIT %(limit)s
FOR UPDATE OF b SKIP LOCKED
