-- How many batches with flow rows wait for scoring, within the look-back and before it.
SELECT count(*) FILTER (WHERE b.received_at >= now() - make_interval(hours => %(lookback_hours)s)),
       count(*) FILTER (WHERE b.received_at < now() - make_interval(hours => %(lookback_hours)s))
FROM ingest_batches b
WHERE b.flow_rows > 0 AND NOT EXISTS (SELECT 1 FROM scored_batches s WHERE s.batch_id = b.id)
