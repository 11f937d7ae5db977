-- The agents' latest reported state: hosts per enterprise-network state, and the spool backlog
-- (log lines waiting on the endpoints), from each host's latest netflow_agent_status snapshot.
SELECT coalesce(nullif(s.columns ->> 'enterprise_network', ''), 'unknown') AS network,
       count(*) AS hosts,
       sum(coalesce(nullif(s.columns ->> 'spool_rows', ''), '0')::bigint) AS spool_rows,
       min(nullif(nullif(s.columns ->> 'spool_oldest_unsent', ''), '0')::bigint) AS oldest_unsent,
       sum(coalesce(nullif(s.columns ->> 'spool_dropped_rows', ''), '0')::bigint) AS dropped_rows
FROM hosts h
LEFT JOIN LATERAL (
    SELECT r.columns FROM results r
    WHERE r.host_id = h.id AND r.name LIKE '%%agent_status'
    ORDER BY r.unix_time DESC LIMIT 1
) s ON true
GROUP BY 1
ORDER BY 1
