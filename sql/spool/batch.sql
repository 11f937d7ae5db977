-- Candidate rows for the next batch: the oldest rows of the oldest row's log type, in order, at most
-- :limit (the caller stops at its byte bound).
SELECT id, log_type, data, bytes
FROM spool
WHERE log_type = (SELECT log_type FROM spool ORDER BY id LIMIT 1)
ORDER BY id
LIMIT :limit;
