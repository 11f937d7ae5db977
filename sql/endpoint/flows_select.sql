-- Flow rows whose window starts in [:since, :until), oldest first (Store.flows; the store passes the
-- widest bounds for an unset one, so the window_start index is always usable).
SELECT
    id, window_start, window_seconds, pid, process_name, process_path, process_sha256, uid, username,
    protocol, family, direction, local_address, local_port, remote_address, remote_port,
    local_hostname, remote_hostname, bytes_sent, bytes_received, connections, activity,
    first_seen, last_seen, sends, receives, community_id, process_start_time, parent_pid, cmdline
FROM flows
WHERE window_start >= :since AND window_start < :until
ORDER BY window_start, id;
