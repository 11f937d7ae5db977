-- Claim ingested batches with flow rows not summed into the rollups yet, oldest first, received in
-- the last %(lookback_hours)s hours: their rolled_batches rows, written in the transaction that sums
-- them. Returns each claimed batch with its host and window range (to find its rows in flows).
WITH claimed AS (
    INSERT INTO rolled_batches (batch_id)
    SELECT b.id
    FROM ingest_batches b
    WHERE b.flow_rows > 0
      AND b.received_at >= now() - make_interval(hours => %(lookback_hours)s)
      AND NOT EXISTS (SELECT 1 FROM rolled_batches r WHERE r.batch_id = b.id)
    ORDER BY b.id
    LIMIT %(limit)s
    ON CONFLICT DO NOTHING
    RETURNING batch_id
)
SELECT b.id, b.host_id, b.flow_window_min, b.flow_window_max
FROM ingest_batches b
JOIN claimed c ON c.batch_id = b.id
ORDER BY b.id
