-- Sum the staged rows into traffic_hourly (per host and hour).
INSERT INTO traffic_hourly AS t (hour, host_id, bytes_sent, bytes_received, connections, flow_rows)
SELECT window_start / 3600 * 3600, host_id, sum(bytes_sent), sum(bytes_received), sum(connections), count(*)
FROM rollup_rows
GROUP BY 1, 2
ORDER BY 1, 2
ON CONFLICT (hour, host_id) DO UPDATE
SET bytes_sent = t.bytes_sent + EXCLUDED.bytes_sent,
    bytes_received = t.bytes_received + EXCLUDED.bytes_received,
    connections = t.connections + EXCLUDED.connections,
    flow_rows = t.flow_rows + EXCLUDED.flow_rows
