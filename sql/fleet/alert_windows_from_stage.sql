INSERT INTO alert_windows SELECT * FROM alert_windows_stage ON CONFLICT DO NOTHING
