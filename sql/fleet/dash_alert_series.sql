-- The traffic of an alert's host, application (executable path) and destination per window over
-- [%(since)s, %(until)s]: the alert page's chart. A fan-out alert (no destination) takes every one.
SELECT window_start, sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received,
       sum(connections)::bigint AS connections
FROM flows
WHERE host_id = %(host_id)s AND window_start BETWEEN %(since)s AND %(until)s
  AND process_path = %(process_path)s
  AND (%(remote_address)s::inet IS NULL OR remote_address = %(remote_address)s::inet)
GROUP BY window_start
ORDER BY window_start
