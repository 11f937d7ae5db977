-- Flow rows ingested per %(bucket)s seconds since %(since)s (epoch s), and quarantined items.
SELECT (extract(epoch FROM received_at)::bigint / %(bucket)s) * %(bucket)s AS at,
       sum(flow_rows)::bigint AS flow_rows, sum(quarantined)::bigint AS quarantined, count(*) AS batches
FROM ingest_batches
WHERE received_at >= to_timestamp(%(since)s)
GROUP BY 1
ORDER BY 1
