-- The endpoint's flow rows behind an alert's windows (flows_host_window finds them).
SELECT f.window_start, f.window_seconds, f.pid, f.process_name, f.process_path, f.process_sha256,
       f.uid, f.username, f.protocol, f.family, f.direction, host(f.local_address) AS local_address,
       f.local_port, host(f.remote_address) AS remote_address, f.remote_port, f.local_hostname,
       f.remote_hostname, f.bytes_sent, f.bytes_received, f.connections, f.activity, f.first_seen,
       f.last_seen, f.community_id, f.cmdline
FROM flows f
JOIN alert_windows w ON w.alert_id = %(alert_id)s AND f.window_start = w.window_start
     AND f.remote_address = w.remote_address AND f.direction = w.direction
     AND (CASE WHEN f.direction = 'inbound' THEN f.local_port ELSE f.remote_port END) = w.service_port
     AND f.protocol = w.protocol AND f.process_path = w.process_path
WHERE f.host_id = %(host_id)s
  AND f.window_start BETWEEN %(first_window)s AND %(last_window)s
ORDER BY f.window_start, f.remote_address, f.remote_port, f.local_port
LIMIT %(limit)s
