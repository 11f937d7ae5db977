-- The analysts' dashboard: analyst accounts, and rollups of the flows (per hour, per day) that its
-- overview and host pages read instead of scanning the flows table. The rollup task sums each
-- ingested batch into them exactly once (rolled_batches), see sql/fleet/rollup_*.sql.

-- Analyst accounts for the dashboard (the JSON API uses api_tokens). Only a salted password hash
-- (werkzeug's scrypt) is stored. session_epoch is in every session cookie: bumping it (password
-- change, disabling) ends the sessions signed before.
CREATE TABLE analysts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'analyst')),
    session_epoch integer NOT NULL DEFAULT 0,
    failed_logins integer NOT NULL DEFAULT 0, -- wrong passwords since the last good one
    locked_until timestamptz,             -- set after too many wrong passwords in a row
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    disabled_at timestamptz               -- NULL while the account may log in
);

-- Which ingested batches are summed into the rollups: one row per batch, written in the same
-- transaction as the sums, so a batch is counted once however often the task runs.
CREATE TABLE rolled_batches (
    batch_id bigint PRIMARY KEY REFERENCES ingest_batches (id) ON DELETE CASCADE,
    rolled_at timestamptz NOT NULL DEFAULT now()
);

-- Traffic per host and hour (of window_start): the overview's fleet traffic, the hosts list and the
-- host page's chart.
CREATE TABLE traffic_hourly (
    hour bigint NOT NULL,                 -- epoch s, a multiple of 3600
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    connections bigint NOT NULL,
    flow_rows bigint NOT NULL,
    PRIMARY KEY (hour, host_id)
);
CREATE INDEX traffic_hourly_host ON traffic_hourly (host_id, hour);

-- Fleet-wide traffic per application (executable path) and hour: the overview's top applications.
CREATE TABLE app_hourly (
    hour bigint NOT NULL,
    process_path text NOT NULL,
    process_name text NOT NULL,           -- the latest name seen for the path
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    flow_rows bigint NOT NULL,
    PRIMARY KEY (hour, process_path)
);

-- Fleet-wide traffic per remote address and hour: the overview's top destinations.
CREATE TABLE destination_hourly (
    hour bigint NOT NULL,
    remote_address inet NOT NULL,
    remote_hostname text NOT NULL,        -- the latest non-empty name seen for the address
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    flow_rows bigint NOT NULL,
    PRIMARY KEY (hour, remote_address)
);

-- A host's applications (with the hashes of their binaries) and destinations per day: the host page.
CREATE TABLE host_apps_daily (
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    day bigint NOT NULL,                  -- epoch s, a multiple of 86400
    process_path text NOT NULL,
    process_sha256 text NOT NULL,
    process_name text NOT NULL,
    username text NOT NULL,               -- the latest user seen
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    flow_rows bigint NOT NULL,
    first_window bigint NOT NULL,
    last_window bigint NOT NULL,
    PRIMARY KEY (host_id, day, process_path, process_sha256)
);

CREATE TABLE host_destinations_daily (
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    day bigint NOT NULL,
    remote_address inet NOT NULL,
    remote_hostname text NOT NULL,
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    flow_rows bigint NOT NULL,
    last_window bigint NOT NULL,
    PRIMARY KEY (host_id, day, remote_address)
);

-- The latest agent status of a host (the pack's netflow_agent_status snapshot) without walking its
-- other results.
CREATE INDEX results_agent_status ON results (host_id, unix_time DESC) WHERE name LIKE '%agent_status';

-- Ingest health over time (rows per minute) from the batches.
CREATE INDEX quarantine_time ON quarantine (received_at);

-- The flows explorer pages newest first (window_start, host_id, flow_key descending, keyset): with
-- this index a filter on an unindexed column (port, protocol, process) stops after a page of matches
-- instead of sorting the whole time range. It also serves every window_start range, so the BRIN
-- index it replaces goes. (On a large existing flows table this takes a while and blocks ingest.)
CREATE INDEX flows_window_order ON flows (window_start DESC, host_id DESC, flow_key DESC);
DROP INDEX flows_window_start;
