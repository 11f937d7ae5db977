-- Quarantined rows per filter since a time: the counts the dashboard and `quarantine` show.
SELECT filter, count(*) AS rows, max(received_at) AS last_at
FROM quarantine
WHERE received_at >= %(since)s
GROUP BY filter
ORDER BY filter;
