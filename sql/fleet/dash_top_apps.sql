-- The applications (executable paths) that moved the most bytes fleet-wide since %(since)s.
SELECT process_path, max(process_name) AS process_name, sum(bytes_sent)::bigint AS bytes_sent,
       sum(bytes_received)::bigint AS bytes_received
FROM app_hourly
WHERE hour >= %(since)s
GROUP BY process_path
ORDER BY sum(bytes_sent + bytes_received) DESC
LIMIT %(limit)s
