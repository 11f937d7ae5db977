-- Set one spooled line (:id) aside in rejected, with :reason and the time :rejected; ack.sql then
-- deletes it from the spool in the same transaction.
INSERT OR REPLACE INTO rejected (id, log_type, data, bytes, created, rejected, reason)
SELECT id, log_type, data, bytes, created, :rejected, :reason FROM spool WHERE id = :id;
