-- Bulk load of sanitised flow rows (text format; the column order is fleet_analytics.ingest.store's).
COPY flows (
    host_id, batch_id, flow_key, window_start, window_seconds, pid, process_name, process_path,
    process_sha256, uid, username, protocol, family, direction, local_address, local_port,
    remote_address, remote_port, local_hostname, remote_hostname, bytes_sent, bytes_received,
    connections, activity, first_seen, last_seen, sends, receives, community_id, process_start_time,
    parent_pid, cmdline
) FROM STDIN
