-- The outbound spool (spool.db): osquery log lines waiting to be forwarded to the fleet service.
-- Append-only for the logger; rows leave only when the fleet service acknowledged them, or when the
-- spool is over its size bound (the oldest first, counted in spool_state). Applied at every open.
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY,      -- increasing in arrival order: batches go oldest first
    log_type TEXT NOT NULL,      -- result | status (osquery's log types; one type per batch)
    data TEXT NOT NULL,          -- one log line as osqueryd produced it (a JSON object)
    bytes INTEGER NOT NULL,      -- length of data in UTF-8 bytes, for the size bound and batching
    created REAL NOT NULL        -- epoch s when it was spooled
);

-- Counters and totals that must survive restarts: bytes (the sum of spool.bytes), dropped_rows and
-- dropped_bytes (evicted by the size bound, never sent).
CREATE TABLE IF NOT EXISTS spool_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO spool_state (key, value) VALUES ('bytes', 0), ('dropped_rows', 0), ('dropped_bytes', 0);


-- Lines the fleet service refused outright (a single line still too large for it: HTTP 413), set
-- aside here instead of holding the spool forever; counted in spool_state.rejected_rows.
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,      -- the line's spool id
    log_type TEXT NOT NULL,
    data TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL,       -- when it was spooled
    rejected REAL NOT NULL,      -- when the service refused it
    reason TEXT NOT NULL         -- what the service said
);
INSERT OR IGNORE INTO spool_state (key, value) VALUES ('rejected_rows', 0);

PRAGMA user_version = 1;
