-- Sum the staged rows into host_destinations_daily (per host, day and remote address).
INSERT INTO host_destinations_daily AS h (host_id, day, remote_address, remote_hostname, bytes_sent,
                                          bytes_received, flow_rows, last_window)
SELECT host_id, window_start / 86400 * 86400, remote_address, max(remote_hostname), sum(bytes_sent),
       sum(bytes_received), count(*), max(window_start)
FROM rollup_rows
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (host_id, day, remote_address) DO UPDATE
SET remote_hostname = CASE WHEN EXCLUDED.remote_hostname <> '' THEN EXCLUDED.remote_hostname
                           ELSE h.remote_hostname END,
    bytes_sent = h.bytes_sent + EXCLUDED.bytes_sent,
    bytes_received = h.bytes_received + EXCLUDED.bytes_received,
    flow_rows = h.flow_rows + EXCLUDED.flow_rows,
    last_window = greatest(h.last_window, EXCLUDED.last_window)
