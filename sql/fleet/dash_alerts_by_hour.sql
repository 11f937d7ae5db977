-- Alerts per hour of their first window and severity since %(since)s (suppressed ones left out).
SELECT first_window / 3600 * 3600 AS hour, severity, count(*) AS alerts
FROM alerts
WHERE first_window >= %(since)s AND status <> 'suppressed'
GROUP BY 1, 2
ORDER BY 1
