-- Sum the staged rows into destination_hourly (fleet-wide, per remote address and hour).
INSERT INTO destination_hourly AS d (hour, remote_address, remote_hostname, bytes_sent, bytes_received,
                                     flow_rows)
SELECT window_start / 3600 * 3600, remote_address, max(remote_hostname), sum(bytes_sent),
       sum(bytes_received), count(*)
FROM rollup_rows
GROUP BY 1, 2
ORDER BY 1, 2
ON CONFLICT (hour, remote_address) DO UPDATE
SET remote_hostname = CASE WHEN EXCLUDED.remote_hostname <> '' THEN EXCLUDED.remote_hostname
                           ELSE d.remote_hostname END,
    bytes_sent = d.bytes_sent + EXCLUDED.bytes_sent,
    bytes_received = d.bytes_received + EXCLUDED.bytes_received,
    flow_rows = d.flow_rows + EXCLUDED.flow_rows
