-- A progress mark kept with the spool (:key), e.g. the last flow row id emitted as a result line;
-- no row when never set.
SELECT value FROM spool_state WHERE key = :key;
