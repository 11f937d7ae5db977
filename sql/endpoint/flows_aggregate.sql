-- Aggregate the raw rows of the windows [:from_window, :to_window) into flows: one row per window and
-- flow key. Run by Store.aggregate in the same transaction that advances the watermark, so each window
-- is aggregated exactly once.
-- Parameters: :from_window, :to_window (epoch s, aligned), :window_seconds (the current interval).
--
-- Rules (documented per column in schema.sql):
--   counters        summed
--   connections     raw rows whose activity is connect or accept
--   descriptive     process_name/path/sha256, username, hostnames, cmdline, community_id: the non-empty
--                   value (MAX over the non-empty ones), '' when none; parent_pid: the non-zero one
--   direction       outbound if any row says outbound, else inbound if any says inbound, else unknown
--   activity        the highest rank; the ranks are extension.events.ACTIVITY_RANK (a test checks they
--                   agree for every pair of activities). The store only writes known activities; should
--                   a foreign row hold another value it ranks lowest, and a flow of only such rows says
--                   data, so that one bad row can never stop the aggregation.
--   first_seen      floor of the earliest first_seen, last_seen ceil of the latest last_seen, both as
--                   INTEGER epoch s; a raw row whose first_seen/last_seen is 0 (unknown, e.g. a lifecycle
--                   event) counts at its time. CAST truncates toward zero, which is floor for the
--                   positive epoch values stored here (no dependency on SQLite's optional math functions).
INSERT INTO flows (
    window_start, window_seconds, pid, process_name, process_path, process_sha256, uid, username,
    protocol, family, direction, local_address, local_port, remote_address, remote_port,
    local_hostname, remote_hostname, bytes_sent, bytes_received, connections, activity,
    first_seen, last_seen, sends, receives, community_id, process_start_time, parent_pid, cmdline
)
SELECT
    window_start,
    :window_seconds,
    pid,
    coalesce(max(nullif(process_name, '')), ''),
    coalesce(max(nullif(process_path, '')), ''),
    coalesce(max(nullif(process_sha256, '')), ''),
    uid,
    coalesce(max(nullif(username, '')), ''),
    protocol,
    family,
    CASE
        WHEN max(direction = 'outbound') THEN 'outbound'
        WHEN max(direction = 'inbound') THEN 'inbound'
        ELSE 'unknown'
    END,
    local_address,
    local_port,
    remote_address,
    remote_port,
    coalesce(max(nullif(local_hostname, '')), ''),
    coalesce(max(nullif(remote_hostname, '')), ''),
    sum(bytes_sent),
    sum(bytes_received),
    sum(activity IN ('connect', 'accept')),
    CASE max(
        CASE activity
            WHEN 'connect_failed' THEN 6
            WHEN 'connect' THEN 5
            WHEN 'accept' THEN 4
            WHEN 'listen' THEN 3
            WHEN 'data' THEN 2
            WHEN 'close' THEN 1
            ELSE 0
        END
    )
        WHEN 6 THEN 'connect_failed'
        WHEN 5 THEN 'connect'
        WHEN 4 THEN 'accept'
        WHEN 3 THEN 'listen'
        WHEN 2 THEN 'data'
        WHEN 1 THEN 'close'
        ELSE 'data'
    END,
    CAST(min(coalesce(nullif(first_seen, 0), time)) AS INTEGER),
    CAST(max(coalesce(nullif(last_seen, 0), time)) AS INTEGER)
        + (max(coalesce(nullif(last_seen, 0), time))
           > CAST(max(coalesce(nullif(last_seen, 0), time)) AS INTEGER)),
    sum(sends),
    sum(receives),
    coalesce(max(nullif(community_id, '')), ''),
    process_start_time,
    coalesce(max(nullif(parent_pid, 0)), 0),
    coalesce(max(nullif(cmdline, '')), '')
FROM socket_events
WHERE window_start >= :from_window AND window_start < :to_window
GROUP BY window_start, pid, process_start_time, uid, protocol, family,
    local_address, local_port, remote_address, remote_port
ORDER BY window_start, pid, process_start_time, uid, protocol, family,
    local_address, local_port, remote_address, remote_port;
