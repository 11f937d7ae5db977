-- Earlier flow rows of the scored hosts towards the scored destinations: the beaconing look-back.
SELECT host_id AS host, window_start, window_seconds, process_name, process_path, process_sha256,
       username, protocol, direction, host(remote_address) AS remote_address, local_port, remote_port,
       remote_hostname, bytes_sent, bytes_received, connections, first_seen, last_seen
FROM flows
WHERE host_id = ANY(%(host_ids)s) AND window_start >= %(since)s AND window_start < %(before)s
  AND remote_address = ANY(%(addresses)s::inet[])
  AND batch_id <> ALL(%(batch_ids)s)
