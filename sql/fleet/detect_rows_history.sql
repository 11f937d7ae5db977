-- Earlier contacts of the scored hosts towards the scored destinations: the beaconing look-back.
-- Summed here into one row per flow window (the unit of fleet_analytics.analytics.features:
-- host, window, executable, protocol, peer, service port, direction), with only the columns the
-- look-back features read; the caller derives the application from the path (history_windows).
-- The sha256 is kept only where there is no path: it then names the application.
SELECT host_id AS host, window_start, process_path,
       CASE WHEN process_path = '' THEN process_sha256 ELSE '' END AS process_sha256,
       host(remote_address) AS remote_address, min(first_seen) AS first_seen,
       sum(bytes_sent) AS bytes_sent, sum(bytes_received) AS bytes_received
FROM flows
WHERE host_id = ANY(%(host_ids)s) AND window_start >= %(since)s AND window_start < %(before)s
  AND remote_address = ANY(%(addresses)s::inet[])
  AND batch_id <> ALL(%(batch_ids)s)
GROUP BY host_id, window_start, process_path, 4, protocol, remote_address,
         CASE WHEN direction = 'inbound' THEN local_port ELSE remote_port END, direction
