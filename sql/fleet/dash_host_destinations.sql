-- A host's destinations since %(since)s, most bytes first.
SELECT host(remote_address) AS remote_address, max(remote_hostname) AS remote_hostname,
       sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received,
       sum(flow_rows)::bigint AS flow_rows, max(last_window) AS last_window
FROM host_destinations_daily
WHERE host_id = %(host_id)s AND day >= %(since)s / 86400 * 86400
GROUP BY remote_address
ORDER BY sum(bytes_sent + bytes_received) DESC
LIMIT %(limit)s
