-- Add :delta to the spool_state value :key.
UPDATE spool_state SET value = value + :delta WHERE key = :key;
