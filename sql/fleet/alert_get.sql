SELECT a.id, a.host_id, h.host_identifier, h.hostname, a.model_id, a.app, a.process_name,
       a.process_path, a.process_sha256, a.username, a.protocol, host(a.remote_address) AS remote_address,
       a.service_port, a.destinations, a.first_window, a.last_window, a.windows, a.score, a.threshold,
       a.severity, a.explanation, a.reasons, a.status, a.note, a.status_changed_by, a.created_at,
       a.updated_at
FROM alerts a JOIN hosts h ON h.id = a.host_id
WHERE a.id = %(alert_id)s
