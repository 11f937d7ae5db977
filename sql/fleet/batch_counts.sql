-- What a stored batch held.
UPDATE ingest_batches SET
    flow_rows = %(flow_rows)s,
    flow_duplicates = %(flow_duplicates)s,
    result_rows = %(result_rows)s,
    status_rows = %(status_rows)s,
    quarantined = %(quarantined)s,
    flow_window_min = %(flow_window_min)s,
    flow_window_max = %(flow_window_max)s
WHERE id = %(batch_id)s;
