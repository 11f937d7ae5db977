-- The remote addresses that moved the most bytes fleet-wide since %(since)s.
SELECT host(remote_address) AS remote_address, max(remote_hostname) AS remote_hostname,
       sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received
FROM destination_hourly
WHERE hour >= %(since)s
GROUP BY remote_address
ORDER BY sum(bytes_sent + bytes_received) DESC
LIMIT %(limit)s
