-- The hosts that moved the most bytes since %(since)s.
SELECT t.host_id, h.host_identifier, h.hostname, sum(t.bytes_sent)::bigint AS bytes_sent,
       sum(t.bytes_received)::bigint AS bytes_received
FROM traffic_hourly t JOIN hosts h ON h.id = t.host_id
WHERE t.hour >= %(since)s
GROUP BY t.host_id, h.host_identifier, h.hostname
ORDER BY sum(t.bytes_sent + t.bytes_received) DESC
LIMIT %(limit)s
