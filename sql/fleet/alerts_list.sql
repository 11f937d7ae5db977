-- Alerts, newest first, filtered; keyset pagination on id (before_id: the last id of the previous page).
SELECT a.id, a.host_id, h.host_identifier, h.hostname, a.model_id, a.app, a.process_name,
       a.process_path, a.process_sha256, a.username, a.protocol, host(a.remote_address) AS remote_address,
       a.service_port, a.destinations, a.first_window, a.last_window, a.windows, a.score, a.threshold,
       a.severity, a.explanation, a.reasons, a.status, a.note, a.status_changed_by, a.created_at,
       a.updated_at
FROM alerts a JOIN hosts h ON h.id = a.host_id
WHERE (%(since)s::timestamptz IS NULL OR a.created_at >= %(since)s::timestamptz)
  AND (%(host_id)s::bigint IS NULL OR a.host_id = %(host_id)s::bigint)
  AND (%(host_identifier)s::text IS NULL OR h.host_identifier = %(host_identifier)s::text)
  AND (%(statuses)s::text[] IS NULL OR a.status = ANY(%(statuses)s::text[]))
  AND (%(severities)s::text[] IS NULL OR a.severity = ANY(%(severities)s::text[]))
  AND (%(before_id)s::bigint IS NULL OR a.id < %(before_id)s::bigint)
ORDER BY a.id DESC
LIMIT %(limit)s
