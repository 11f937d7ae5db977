-- A host's latest alerts.
SELECT id, severity, status, app, process_name, host(remote_address) AS remote_address, service_port,
       first_window, last_window, score, explanation
FROM alerts WHERE host_id = %(host_id)s
ORDER BY id DESC
LIMIT %(limit)s
