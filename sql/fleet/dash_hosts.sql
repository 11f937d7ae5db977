-- Hosts with their latest agent status (the pack's netflow_agent_status snapshot), open alerts and
-- traffic since %(since)s; filtered by %(q)s (identifier or hostname, substring), paged.
SELECT h.id, h.host_identifier, h.hostname, h.platform, h.os_version, h.osquery_version, h.enrolled_at,
       h.last_seen_at, h.last_log_at, s.columns AS agent_status, s.unix_time AS agent_status_time,
       coalesce(a.open_alerts, 0) AS open_alerts, coalesce(t.bytes_sent, 0) AS bytes_sent,
       coalesce(t.bytes_received, 0) AS bytes_received, count(*) OVER () AS total
FROM hosts h
LEFT JOIN LATERAL (
    SELECT r.columns, r.unix_time FROM results r
    WHERE r.host_id = h.id AND r.name LIKE '%%agent_status'
    ORDER BY r.unix_time DESC LIMIT 1
) s ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS open_alerts FROM alerts al
    WHERE al.host_id = h.id AND al.status IN ('new', 'acknowledged')
) a ON true
LEFT JOIN LATERAL (
    SELECT sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received
    FROM traffic_hourly th WHERE th.host_id = h.id AND th.hour >= %(since)s
) t ON true
WHERE (%(q)s::text IS NULL OR h.host_identifier ILIKE '%%' || %(q)s::text || '%%'
       OR h.hostname ILIKE '%%' || %(q)s::text || '%%')
  AND (%(host_id)s::bigint IS NULL OR h.id = %(host_id)s::bigint)
ORDER BY h.last_seen_at DESC, h.id
LIMIT %(limit)s OFFSET %(offset)s
