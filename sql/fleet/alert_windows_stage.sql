-- A merge may bring windows the alert already holds: stage them, then keep the new ones.
CREATE TEMP TABLE IF NOT EXISTS alert_windows_stage (LIKE alert_windows) ON COMMIT DELETE ROWS
