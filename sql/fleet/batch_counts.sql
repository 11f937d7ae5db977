-- What a stored batch held.
UPDATE ingest_batches SET
    flow_rows = %(flow_rows)s,
    flow_duplicates = %(flow_duplicates)s,
    result_rows = %(result_rows)s,
    status_rows = %(status_rows)s,
    quarantined = %(quarantined)s
WHERE id = %(batch_id)s;
