-- New (not suppressed) alerts per host and UTC day: what the daily budget has left.
SELECT host_id, first_window / 86400 AS day, count(*)
FROM alerts
WHERE host_id = ANY(%(host_ids)s) AND first_window >= %(since)s AND status <> 'suppressed'
GROUP BY 1, 2
