-- Delete one acknowledged row (:id); executed for every id of the batch in one transaction.
DELETE FROM spool WHERE id = :id RETURNING bytes;
