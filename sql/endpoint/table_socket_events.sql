-- Rows of the osquery table net_socket_events, at most :limit, in no particular order: an ORDER BY would
-- make SQLite walk the table in id order instead of using the index of the constraint.
-- /*where*/ is replaced by Store.query_table with the pushed-down constraints: `column op :pN` for
-- each, on a column of this table (whitelisted from its schema) and an operator of
-- extension/constraints.py, values always bound; `1` when there are none. The indexes on time,
-- window_start and pid serve the usual pack queries (`time > X`, `pid = N`).
SELECT
    id, window_start, time, activity, pid, process_name, protocol, family, local_address, local_port,
    remote_address, remote_port, uid, username, process_path, process_sha256, process_start_time,
    parent_pid, cmdline, direction, local_hostname, remote_hostname, bytes_sent, bytes_received,
    sends, receives, first_seen, last_seen, community_id
FROM socket_events
WHERE /*where*/
LIMIT :limit;
