-- The oldest rows, for eviction past the size bound: id and size, oldest first, at most :limit.
SELECT id, bytes FROM spool ORDER BY id LIMIT :limit;
