-- Flow rows of a period, as the features read them (COPY ... TO STDOUT CSV): training.
SELECT host_id AS host, window_start, window_seconds, process_name, process_path, process_sha256,
       username, protocol, direction, host(remote_address) AS remote_address, local_port, remote_port,
       remote_hostname, bytes_sent, bytes_received, connections, first_seen, last_seen
FROM flows
WHERE window_start >= %(since)s AND window_start < %(until)s
