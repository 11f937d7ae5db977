-- The flows explorer: flow rows in [%(since)s, %(until)s) matching the filters, newest first, paged by
-- keyset (the last row's window_start, host_id and flow_key). Every filter is optional; host, sha256,
-- address and service-port filters use their indexes, the rest are checked on the rows read newest
-- first (flows_window_order) until a page is full.
SELECT f.window_start, f.host_id, h.host_identifier, f.flow_key, f.window_seconds, f.pid, f.process_name,
       f.process_path, f.process_sha256, f.username, f.protocol, f.direction,
       host(f.local_address) AS local_address, f.local_port, host(f.remote_address) AS remote_address,
       f.remote_port, f.remote_hostname, f.bytes_sent, f.bytes_received, f.connections, f.activity,
       f.first_seen, f.last_seen, f.community_id
FROM flows f JOIN hosts h ON h.id = f.host_id
WHERE f.window_start >= %(since)s AND f.window_start < %(until)s
  AND (%(host_ids)s::bigint[] IS NULL OR f.host_id = ANY(%(host_ids)s::bigint[]))
  AND (%(process)s::text IS NULL OR f.process_name = %(process)s::text OR f.process_path = %(process)s::text)
  AND (%(sha256)s::text IS NULL OR f.process_sha256 = %(sha256)s::text)
  AND (%(network)s::inet IS NULL OR f.remote_address <<= %(network)s::inet)
  AND (%(port)s::integer IS NULL
       OR (CASE WHEN f.direction = 'inbound' THEN f.local_port ELSE f.remote_port END) = %(port)s::integer)
  AND (%(protocol)s::text IS NULL OR f.protocol = %(protocol)s::text)
  AND (%(after_window)s::bigint IS NULL
       OR (f.window_start, f.host_id, f.flow_key)
          < (%(after_window)s::bigint, %(after_host)s::bigint, %(after_key)s::uuid))
ORDER BY f.window_start DESC, f.host_id DESC, f.flow_key DESC
LIMIT %(limit)s
