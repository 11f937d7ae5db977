-- The claimed batches' flow rows, read once for the five rollups (dropped at commit).
CREATE TEMP TABLE rollup_rows ON COMMIT DROP AS
SELECT host_id, window_start, process_name, process_path, process_sha256, username, remote_address,
       remote_hostname, bytes_sent, bytes_received, connections
FROM flows
WHERE host_id = ANY(%(host_ids)s) AND window_start BETWEEN %(low)s AND %(high)s
  AND batch_id = ANY(%(batch_ids)s)
