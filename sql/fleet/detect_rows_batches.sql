-- Flow rows of the batches being scored (flows_host_window finds them; batch_id picks them).
SELECT batch_id, host_id AS host, window_start, window_seconds, process_name, process_path,
       process_sha256, username, protocol, direction, host(remote_address) AS remote_address,
       local_port, remote_port, remote_hostname, bytes_sent, bytes_received, connections, first_seen, last_seen
FROM flows
WHERE host_id = ANY(%(host_ids)s) AND window_start BETWEEN %(low)s AND %(high)s
  AND batch_id = ANY(%(batch_ids)s)
