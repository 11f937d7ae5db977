-- Alerts for the dashboard's list: filtered, sorted by %(sort)s (newest, score, severity, window),
-- paged by offset, with the total count.
SELECT a.id, a.host_id, h.host_identifier, h.hostname, a.app, a.process_name, a.process_path,
       a.protocol, host(a.remote_address) AS remote_address, a.service_port, a.destinations,
       a.first_window, a.last_window, a.windows, a.score, a.threshold, a.severity, a.explanation,
       a.status, a.note, a.status_changed_by, a.created_at, count(*) OVER () AS total
FROM alerts a JOIN hosts h ON h.id = a.host_id
WHERE (%(statuses)s::text[] IS NULL OR a.status = ANY(%(statuses)s::text[]))
  AND (%(severities)s::text[] IS NULL OR a.severity = ANY(%(severities)s::text[]))
  AND (%(host_id)s::bigint IS NULL OR a.host_id = %(host_id)s::bigint)
  AND (%(host)s::text IS NULL OR h.host_identifier ILIKE '%%' || %(host)s::text || '%%'
       OR h.hostname ILIKE '%%' || %(host)s::text || '%%')
  AND (%(q)s::text IS NULL OR a.process_path ILIKE '%%' || %(q)s::text || '%%'
       OR a.process_name ILIKE '%%' || %(q)s::text || '%%'
       OR host(a.remote_address) LIKE %(q)s::text || '%%' OR a.explanation ILIKE '%%' || %(q)s::text || '%%')
  AND (%(since)s::bigint IS NULL OR a.last_window >= %(since)s::bigint)
ORDER BY
  CASE WHEN %(sort)s = 'score' THEN a.score END DESC NULLS LAST,
  CASE WHEN %(sort)s = 'severity'
       THEN array_position(ARRAY['low', 'medium', 'high', 'critical'], a.severity) END DESC NULLS LAST,
  CASE WHEN %(sort)s = 'window' THEN a.last_window END DESC NULLS LAST,
  a.id DESC
LIMIT %(limit)s OFFSET %(offset)s
