-- Which of a batch's flow windows the host already sent (by an earlier batch).
SELECT flow_key::text FROM flows
WHERE host_id = %(host_id)s
  AND window_start = ANY(%(window_starts)s::bigint[])
  AND flow_key = ANY(%(flow_keys)s::uuid[]);
