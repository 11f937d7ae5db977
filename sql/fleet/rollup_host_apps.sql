-- Sum the staged rows into host_apps_daily (per host, day and binary).
INSERT INTO host_apps_daily AS h (host_id, day, process_path, process_sha256, process_name, username,
                                  bytes_sent, bytes_received, flow_rows, first_window, last_window)
SELECT host_id, window_start / 86400 * 86400, process_path, process_sha256, max(process_name),
       max(username), sum(bytes_sent), sum(bytes_received), count(*), min(window_start), max(window_start)
FROM rollup_rows
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (host_id, day, process_path, process_sha256) DO UPDATE
SET process_name = EXCLUDED.process_name,
    username = EXCLUDED.username,
    bytes_sent = h.bytes_sent + EXCLUDED.bytes_sent,
    bytes_received = h.bytes_received + EXCLUDED.bytes_received,
    flow_rows = h.flow_rows + EXCLUDED.flow_rows,
    first_window = least(h.first_window, EXCLUDED.first_window),
    last_window = greatest(h.last_window, EXCLUDED.last_window)
