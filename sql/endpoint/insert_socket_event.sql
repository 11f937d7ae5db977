-- One raw row (Store.insert_batch runs it with executemany, one transaction per batch).
-- Parameters: every field of extension.events.SocketEvent, plus :window_start computed by the store.
INSERT INTO socket_events (
    window_start, time, activity, pid, process_name, protocol, family,
    local_address, local_port, remote_address, remote_port,
    uid, username, process_path, process_sha256, process_start_time, parent_pid, cmdline,
    direction, local_hostname, remote_hostname,
    bytes_sent, bytes_received, sends, receives, first_seen, last_seen, community_id
) VALUES (
    :window_start, :time, :activity, :pid, :process_name, :protocol, :family,
    :local_address, :local_port, :remote_address, :remote_port,
    :uid, :username, :process_path, :process_sha256, :process_start_time, :parent_pid, :cmdline,
    :direction, :local_hostname, :remote_hostname,
    :bytes_sent, :bytes_received, :sends, :receives, :first_seen, :last_seen, :community_id
);
