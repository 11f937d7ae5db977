-- The traffic of an alert's host and application (executable path) per window over
-- [%(since)s, %(until)s], all destinations together and the alert's destination alone: the alert
-- page's chart. A fan-out alert (no destination) has no second series.
SELECT window_start, sum(bytes_sent)::bigint AS bytes_sent, sum(bytes_received)::bigint AS bytes_received,
       sum(bytes_sent) FILTER (WHERE remote_address = %(remote_address)s::inet)::bigint AS destination_sent,
       sum(connections)::bigint AS connections
FROM flows
WHERE host_id = %(host_id)s AND window_start BETWEEN %(since)s AND %(until)s
  AND process_path = %(process_path)s
GROUP BY window_start
ORDER BY window_start
