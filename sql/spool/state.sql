-- Every spool_state value, with the row count and the oldest row's time.
SELECT
    (SELECT value FROM spool_state WHERE key = 'bytes') AS bytes,
    (SELECT value FROM spool_state WHERE key = 'dropped_rows') AS dropped_rows,
    (SELECT value FROM spool_state WHERE key = 'dropped_bytes') AS dropped_bytes,
    (SELECT value FROM spool_state WHERE key = 'rejected_rows') AS rejected_rows,
    (SELECT count(*) FROM spool) AS rows,
    (SELECT min(created) FROM spool) AS oldest_created;
