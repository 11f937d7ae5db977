-- A host's applications and the binaries (sha256) seen at each path since %(since)s.
SELECT process_path, process_sha256, max(process_name) AS process_name, max(username) AS username,
       sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received,
       sum(flow_rows)::bigint AS flow_rows, min(first_window) AS first_window, max(last_window) AS last_window
FROM host_apps_daily
WHERE host_id = %(host_id)s AND day >= %(since)s / 86400 * 86400
GROUP BY process_path, process_sha256
ORDER BY sum(bytes_sent + bytes_received) DESC
LIMIT %(limit)s
