-- The flow windows behind an alert, in time order.
SELECT window_start, app, process_path, protocol, host(remote_address) AS remote_address, service_port,
       direction, bytes_sent, bytes_received, connections, score
FROM alert_windows
WHERE alert_id = %(alert_id)s
ORDER BY window_start, remote_address, service_port
LIMIT %(limit)s
