-- Rows of the osquery table net_flows, at most :limit, in no particular order: an ORDER BY would
-- make SQLite walk the table in id order instead of using the index of the constraint.
-- /*where*/ is replaced by Store.query_table with the pushed-down constraints: `column op :pN` for
-- each, on a column of this table (whitelisted from its schema) and an operator of
-- extension/constraints.py, values always bound; `1` when there are none. The indexes on
-- window_start, pid, remote_port and remote_address serve the usual pack queries.
SELECT
    id, window_start, window_seconds, pid, process_name, process_path, process_sha256, uid, username,
    protocol, family, direction, local_address, local_port, remote_address, remote_port,
    local_hostname, remote_hostname, bytes_sent, bytes_received, connections, activity,
    first_seen, last_seen, sends, receives, community_id, process_start_time, parent_pid, cmdline
FROM flows
WHERE /*where*/
LIMIT :limit;
