-- The endpoint database (netflow.db): raw socket events, aggregated flows and the agent's state.
-- Applied by extension/store.py every time the database is opened, so every statement is idempotent.
-- This file is the column documentation: every column carries a comment. The column names are the
-- project's one vocabulary (ARCHITECTURE.md, "One vocabulary"): the same names reach osquery,
-- JSON and PostgreSQL.
--
-- Times are epoch seconds (UTC). Windows are aligned: window_start is a multiple of the aggregation
-- interval (window_seconds) that was in force when the row was written.
--
-- Schema version: bump PRAGMA user_version below (and SCHEMA_VERSION in extension/store.py) on any
-- change that an existing database needs a migration for.

-- Raw rows, one per drained kernel counter entry or lifecycle event, as written by Store.insert_batch.
-- Pruned once aggregated into flows and older than raw_retention_seconds.
CREATE TABLE IF NOT EXISTS socket_events (
    id INTEGER PRIMARY KEY,                -- row id, increasing in insertion order
    window_start INTEGER NOT NULL,         -- start of the aggregation window the row belongs to (epoch s,
                                           -- aligned); a row that arrives after its window was aggregated
                                           -- is folded into the next window still to be aggregated
    time INTEGER NOT NULL,                 -- epoch seconds of the traffic (last call) or lifecycle event
    activity TEXT NOT NULL,                -- connect_failed | connect | accept | listen | data | close
                                           -- (extension.events.Activity)
    pid INTEGER NOT NULL,                  -- process id (thread group id) that sent or received
    process_name TEXT NOT NULL DEFAULT '', -- short process name (kernel comm, 15 characters at most)
    protocol TEXT NOT NULL,                -- tcp | udp
    family INTEGER NOT NULL,               -- 4 | 6 (a v4-mapped IPv6 peer is reported as 4)
    local_address TEXT NOT NULL,           -- local address, canonical text form
    local_port INTEGER NOT NULL,           -- local port
    remote_address TEXT NOT NULL,          -- peer address, canonical text form
    remote_port INTEGER NOT NULL,          -- peer port (0 when there is no peer, e.g. listen)
    uid INTEGER NOT NULL DEFAULT 0,        -- owning user id of the process
    username TEXT NOT NULL DEFAULT '',     -- user name of uid, '' when unknown
    process_path TEXT NOT NULL DEFAULT '', -- path of the process executable, '' when unknown
    process_sha256 TEXT NOT NULL DEFAULT '', -- sha256 (hex) of the executable, '' when unknown
    process_start_time INTEGER NOT NULL DEFAULT 0, -- process start, epoch s; pid + start time survive
                                           -- pid reuse; 0 when unknown
    parent_pid INTEGER NOT NULL DEFAULT 0, -- parent process id, 0 when unknown
    cmdline TEXT NOT NULL DEFAULT '',      -- command line (arguments joined by spaces), '' when unknown
    direction TEXT NOT NULL DEFAULT 'unknown', -- outbound (this host initiated) | inbound | unknown
    local_hostname TEXT NOT NULL DEFAULT '', -- name of the local address where known, else ''
    remote_hostname TEXT NOT NULL DEFAULT '', -- name of the peer (resolved by the process, else reverse
                                           -- lookup) where known, else ''
    bytes_sent INTEGER NOT NULL DEFAULT 0, -- payload bytes sent since the previous drain
    bytes_received INTEGER NOT NULL DEFAULT 0, -- payload bytes received since the previous drain
    sends INTEGER NOT NULL DEFAULT 0,      -- send calls since the previous drain
    receives INTEGER NOT NULL DEFAULT 0,   -- receive calls since the previous drain
    first_seen REAL NOT NULL DEFAULT 0,    -- epoch s (sub-second) of the first call; 0 when not known
    last_seen REAL NOT NULL DEFAULT 0,     -- epoch s (sub-second) of the last call; 0 when not known
    community_id TEXT NOT NULL DEFAULT ''  -- Community ID v1 flow hash ("1:..."), '' when not computed
);

CREATE INDEX IF NOT EXISTS socket_events_time ON socket_events (time);
CREATE INDEX IF NOT EXISTS socket_events_window_start ON socket_events (window_start);
CREATE INDEX IF NOT EXISTS socket_events_pid ON socket_events (pid);

-- One row per window and flow key (process, user, protocol and both endpoints), written once per
-- window by flows_aggregate.sql. Pruned when its window started more than flow_retention_seconds ago.
CREATE TABLE IF NOT EXISTS flows (
    id INTEGER PRIMARY KEY,                -- row id, increasing in insertion order
    window_start INTEGER NOT NULL,         -- start of the window (epoch s, aligned)
    window_seconds INTEGER NOT NULL,       -- the aggregation interval when the window was aggregated
    pid INTEGER NOT NULL,                  -- process id that sent or received
    process_name TEXT NOT NULL,            -- short process name, '' when unknown
    process_path TEXT NOT NULL,            -- path of the executable, '' when unknown
    process_sha256 TEXT NOT NULL,          -- sha256 (hex) of the executable, '' when unknown
    uid INTEGER NOT NULL,                  -- owning user id
    username TEXT NOT NULL,                -- user name of uid, '' when unknown
    protocol TEXT NOT NULL,                -- tcp | udp
    family INTEGER NOT NULL,               -- 4 | 6
    direction TEXT NOT NULL,               -- outbound if any raw row of the flow says outbound, else
                                           -- inbound if any says inbound, else unknown
    local_address TEXT NOT NULL,           -- local address, canonical text form
    local_port INTEGER NOT NULL,           -- local port
    remote_address TEXT NOT NULL,          -- peer address, canonical text form
    remote_port INTEGER NOT NULL,          -- peer port (0 when there is no peer)
    local_hostname TEXT NOT NULL,          -- name of the local address where known, else ''
    remote_hostname TEXT NOT NULL,         -- name of the peer where known, else ''
    bytes_sent INTEGER NOT NULL,           -- payload bytes sent in the window
    bytes_received INTEGER NOT NULL,       -- payload bytes received in the window
    connections INTEGER NOT NULL,          -- connections opened in the window (raw rows with activity
                                           -- connect or accept)
    activity TEXT NOT NULL,                -- the most significant activity of the window:
                                           -- connect_failed > connect > accept > listen > data > close
                                           -- (extension.events.ACTIVITY_RANK)
    first_seen INTEGER NOT NULL,           -- epoch s of the first traffic, rounded down (floor); a raw row
                                           -- without first_seen counts at its time
    last_seen INTEGER NOT NULL,            -- epoch s of the last traffic, rounded up (ceil); a raw row
                                           -- without last_seen counts at its time
    sends INTEGER NOT NULL,                -- send calls in the window
    receives INTEGER NOT NULL,             -- receive calls in the window
    community_id TEXT NOT NULL,            -- Community ID v1 flow hash, '' when not computed
    process_start_time INTEGER NOT NULL,   -- process start, epoch s (0 when unknown); with pid it
                                           -- identifies the process across pid reuse
    parent_pid INTEGER NOT NULL,           -- parent process id, 0 when unknown
    cmdline TEXT NOT NULL                  -- command line, '' when unknown
);

-- One row per window and flow key: a window aggregated twice would fail here instead of double
-- counting. Leads with window_start, so it also serves window_start range scans (push-down).
CREATE UNIQUE INDEX IF NOT EXISTS flows_window_key ON flows (
    window_start, pid, process_start_time, uid, protocol, family,
    local_address, local_port, remote_address, remote_port
);
CREATE INDEX IF NOT EXISTS flows_pid ON flows (pid);
CREATE INDEX IF NOT EXISTS flows_remote_port ON flows (remote_port);
CREATE INDEX IF NOT EXISTS flows_remote_address ON flows (remote_address);

-- Small key/value state that must survive restarts.
--   aggregate_watermark  the window_start of the next window still to be aggregated (epoch s)
--   counter:<name>       persisted counters of dropped or unusual data (late_rows, map_evictions,
--                        ringbuf_lost, decode_errors, ...), added to by Store.add_counter
CREATE TABLE IF NOT EXISTS agent_state (
    key TEXT PRIMARY KEY,                  -- the name of the value (see above)
    value                                  -- the value; integers for the keys above
);

PRAGMA user_version = 1;
