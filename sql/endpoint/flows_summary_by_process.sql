-- Live summary per process since :since (epoch s), computed over the raw rows (time >= :since) so that
-- it includes the window still open. Busiest first (bytes sent + received), at most :limit rows.
--   A process is pid + process_start_time (survives pid reuse); name and path are the non-empty ones.
--   flows             flow keys as flows_aggregate.sql groups them (window, process, user, protocol,
--                     endpoints): the number of flow rows these raw rows make or will make
--   connections       raw rows with activity connect or accept
--   remote_endpoints  distinct (remote_address, remote_port) pairs, not counting port 0 (no peer)
WITH flow AS (
    SELECT
        pid,
        process_start_time,
        max(nullif(process_name, '')) AS process_name,
        max(nullif(process_path, '')) AS process_path,
        remote_address,
        remote_port,
        sum(bytes_sent) AS bytes_sent,
        sum(bytes_received) AS bytes_received,
        sum(activity IN ('connect', 'accept')) AS connections
    FROM socket_events
    WHERE time >= :since
    GROUP BY window_start, pid, process_start_time, uid, protocol, family,
        local_address, local_port, remote_address, remote_port
)
SELECT
    pid,
    process_start_time,
    coalesce(max(process_name), '') AS process_name,
    coalesce(max(process_path), '') AS process_path,
    count(*) AS flows,
    sum(bytes_sent) AS bytes_sent,
    sum(bytes_received) AS bytes_received,
    sum(connections) AS connections,
    count(DISTINCT CASE WHEN remote_port <> 0 THEN remote_address || ' ' || remote_port END)
        AS remote_endpoints
FROM flow
GROUP BY pid, process_start_time
ORDER BY sum(bytes_sent) + sum(bytes_received) DESC, pid, process_start_time
LIMIT :limit;
