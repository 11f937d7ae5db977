-- Evict every row up to and including :id (the oldest ones).
DELETE FROM spool WHERE id <= :id;
