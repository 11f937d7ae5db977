-- Fleet traffic per hour since %(since)s (epoch s), from the rollup (one host: %(host_id)s, else all).
SELECT hour, sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received,
       sum(flow_rows)::bigint AS flow_rows
FROM traffic_hourly
WHERE hour >= %(since)s AND (%(host_id)s::bigint IS NULL OR host_id = %(host_id)s::bigint)
GROUP BY hour
ORDER BY hour
