-- Windows of alerts an analyst judged, within a period: false positives (known normal) and the rest
-- (left out of training).
SELECT a.status = 'false_positive' AS normal, a.host_id AS host, w.window_start, w.app, w.process_path,
       w.protocol, host(w.remote_address) AS remote_address, w.service_port, w.direction
FROM alert_windows w JOIN alerts a ON a.id = w.alert_id
WHERE w.window_start >= %(since)s AND w.window_start < %(until)s
