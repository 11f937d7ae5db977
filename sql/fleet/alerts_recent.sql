-- The hosts' alerts whose last window is recent enough to absorb a repeat (deduplication).
SELECT id, host_id, dedup_key, last_window
FROM alerts
WHERE host_id = ANY(%(host_ids)s) AND last_window >= %(since)s
