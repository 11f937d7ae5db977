-- Sum the staged rows into app_hourly (fleet-wide, per executable path and hour).
INSERT INTO app_hourly AS a (hour, process_path, process_name, bytes_sent, bytes_received, flow_rows)
SELECT window_start / 3600 * 3600, process_path, max(process_name), sum(bytes_sent), sum(bytes_received),
       count(*)
FROM rollup_rows
GROUP BY 1, 2
ORDER BY 1, 2
ON CONFLICT (hour, process_path) DO UPDATE
SET process_name = EXCLUDED.process_name,
    bytes_sent = a.bytes_sent + EXCLUDED.bytes_sent,
    bytes_received = a.bytes_received + EXCLUDED.bytes_received,
    flow_rows = a.flow_rows + EXCLUDED.flow_rows
