-- Quarantined rows per sanitising filter since %(since)s (epoch s), with one reason as an example.
SELECT filter, count(*) AS rows, max(reason) AS example_reason, max(received_at) AS last_at
FROM quarantine
WHERE received_at >= to_timestamp(%(since)s)
GROUP BY filter
ORDER BY count(*) DESC
