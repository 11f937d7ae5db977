-- Alerts by status and severity (every alert, for the overview's open-alert figures).
SELECT status, severity, count(*) AS alerts FROM alerts GROUP BY status, severity
