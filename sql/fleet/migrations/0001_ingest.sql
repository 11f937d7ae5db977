-- The ingest schema: enroll secrets, hosts (node keys stored hashed), ingest batches (idempotency),
-- flows (partitioned by day on window_start), generic results, status logs, quarantine, admin packs.
-- Column names of flows are the project's one vocabulary (ARCHITECTURE.md), the same as the endpoint's
-- net_flows table; times in the vocabulary stay epoch seconds (bigint), service times are timestamptz.

-- Enroll secrets: only a sha256 of each is stored; the active ones are those not revoked.
-- `enroll-secret rotate` adds one and revokes the others; FLEET_ENROLL_SECRET makes its value the
-- active one at start.
CREATE TABLE enroll_secrets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    secret_sha256 bytea NOT NULL UNIQUE,  -- sha256 of the secret's UTF-8 bytes
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz                -- NULL while the secret is accepted
);

-- One row per enrolled osquery node. A node that enrolls again with the same host identifier keeps
-- its row (and its history) and gets a new node key; the old key stops working.
CREATE TABLE hosts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_identifier text NOT NULL UNIQUE, -- osquery's --host_identifier value (hostname, uuid, ...)
    node_key_sha256 bytea NOT NULL UNIQUE, -- sha256 of the node key; the key itself is never stored
    hostname text NOT NULL DEFAULT '',    -- from host_details.system_info.hostname when sent
    uuid text NOT NULL DEFAULT '',        -- from host_details.system_info.uuid when sent
    platform text NOT NULL DEFAULT '',    -- platform_type or os_version.platform
    os_version text NOT NULL DEFAULT '',  -- os_version.name and version
    osquery_version text NOT NULL DEFAULT '', -- osquery_info.version (or the forwarder's agent)
    host_details jsonb NOT NULL DEFAULT '{}'::jsonb, -- the enroll request's host_details as sent
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(), -- last authenticated request of any kind
    last_config_at timestamptz,
    last_log_at timestamptz
);

-- One row per accepted log request: the idempotency record and its counts. A retry carrying the
-- same idempotency key (X-Idempotency-Key or batch_id) from the same host is answered from here and
-- stores nothing again.
CREATE TABLE ingest_batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    idempotency_key text,                 -- NULL when the client sent none (stock osqueryd)
    log_type text NOT NULL CHECK (log_type IN ('result', 'status')),
    received_at timestamptz NOT NULL DEFAULT now(),
    items integer NOT NULL DEFAULT 0,     -- items in `data`
    flow_rows integer NOT NULL DEFAULT 0, -- rows of the flows query stored
    flow_duplicates integer NOT NULL DEFAULT 0, -- flow rows already stored by an earlier batch
    result_rows integer NOT NULL DEFAULT 0, -- rows of other queries stored in results
    status_rows integer NOT NULL DEFAULT 0, -- status log lines stored
    quarantined integer NOT NULL DEFAULT 0, -- rows and items set aside in quarantine
    body_bytes integer NOT NULL DEFAULT 0 -- request body size as received (compressed)
);
CREATE UNIQUE INDEX ingest_batches_idempotency ON ingest_batches (host_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX ingest_batches_received_at ON ingest_batches (received_at);

-- Flow windows: the rows of the netflow_flows query (one per window, process and flow), partitioned
-- by day on window_start. Partitions are created ahead and dropped by retention
-- (fleet_ensure_flow_partition, fleet_drop_flow_partitions_before).
CREATE TABLE flows (
    host_id bigint NOT NULL,              -- hosts.id of the sender
    batch_id bigint NOT NULL,             -- ingest_batches.id that stored the row
    flow_key uuid NOT NULL,               -- digest of the flow key (window_start, pid, process_start_time,
                                          -- uid, protocol, family, both endpoints): one row per key
    window_start bigint NOT NULL,         -- epoch s, aligned
    window_seconds integer NOT NULL,
    pid bigint NOT NULL,
    process_name text NOT NULL,
    process_path text NOT NULL,
    process_sha256 text NOT NULL,         -- hex, '' when unknown
    uid bigint NOT NULL,
    username text NOT NULL,
    protocol text NOT NULL,               -- tcp | udp
    family smallint NOT NULL,             -- 4 | 6
    direction text NOT NULL,              -- outbound | inbound | unknown
    local_address inet NOT NULL,
    local_port integer NOT NULL,
    remote_address inet NOT NULL,
    remote_port integer NOT NULL,
    local_hostname text NOT NULL,
    remote_hostname text NOT NULL,
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    connections bigint NOT NULL,
    activity text NOT NULL,               -- connect_failed | connect | accept | listen | data | close
    first_seen bigint NOT NULL,           -- epoch s
    last_seen bigint NOT NULL,            -- epoch s
    sends bigint NOT NULL,
    receives bigint NOT NULL,
    community_id text NOT NULL,
    process_start_time bigint NOT NULL,
    parent_pid bigint NOT NULL,
    cmdline text NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (window_start);

-- One row per host and flow window; also the index of every per-host time range query.
CREATE UNIQUE INDEX flows_host_window_key ON flows (host_id, window_start, flow_key);
CREATE INDEX flows_window_start ON flows USING brin (window_start);
CREATE INDEX flows_remote_address ON flows (remote_address, window_start);
CREATE INDEX flows_process_sha256 ON flows (process_sha256, window_start);

-- Create the partition of one UTC day (idempotent). Returns the partition's name.
CREATE FUNCTION fleet_ensure_flow_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('flows_%s', to_char(day, 'YYYYMMDD'));
    lower_bound bigint := extract(epoch FROM day::timestamp AT TIME ZONE 'UTC')::bigint;
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF flows FOR VALUES FROM (%s) TO (%s)',
        part, lower_bound, lower_bound + 86400
    );
    RETURN part;
END;
$$;

-- Drop the day partitions that end at or before `before_epoch`. Returns the dropped names.
CREATE FUNCTION fleet_drop_flow_partitions_before(before_epoch bigint) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'flows' AND c.relname ~ '^flows_[0-9]{8}$'
          AND extract(epoch FROM to_date(substr(c.relname, 7), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC')
              + 86400 <= before_epoch
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
END;
$$;

-- Rows of every other scheduled query, as osquery logged them, so nothing an admin schedules is lost.
CREATE TABLE results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    batch_id bigint NOT NULL REFERENCES ingest_batches (id) ON DELETE CASCADE,
    name text NOT NULL,                   -- the query name as logged (pack_<pack>_<query>, ...)
    action text NOT NULL,                 -- added | removed | snapshot
    unix_time bigint NOT NULL,            -- the log line's unixTime (epoch s)
    columns jsonb NOT NULL,               -- the row
    decorations jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX results_name_time ON results (name, unix_time);
CREATE INDEX results_host_time ON results (host_id, unix_time);

-- osquery status logs (log_type status).
CREATE TABLE status_logs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    batch_id bigint NOT NULL REFERENCES ingest_batches (id) ON DELETE CASCADE,
    severity integer NOT NULL,            -- 0 info, 1 warning, 2 error, 3 fatal
    filename text NOT NULL,
    line integer NOT NULL,
    message text NOT NULL,
    version text NOT NULL,
    unix_time bigint NOT NULL,
    decorations jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_logs_host_time ON status_logs (host_id, unix_time);

-- Everything the sanitising filters set aside, with the filter and the reason; never dropped silently.
CREATE TABLE quarantine (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    batch_id bigint NOT NULL REFERENCES ingest_batches (id) ON DELETE CASCADE,
    log_type text NOT NULL,
    query_name text NOT NULL,             -- '' for an item that is not a result row
    filter text NOT NULL,                 -- the name of the filter that refused it
    reason text NOT NULL,                 -- what was wrong, in words
    item jsonb NOT NULL,                  -- the row (or item) as received
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_filter_time ON quarantine (filter, received_at);
CREATE INDEX quarantine_host_time ON quarantine (host_id, received_at);

-- Packs added by admins (the shipped ones are read from sql/packs/); served by /api/v1/osquery/config.
CREATE TABLE packs (
    name text PRIMARY KEY,
    pack jsonb NOT NULL,                  -- an osquery pack: {"queries": {...}, "platform", ...}
    updated_at timestamptz NOT NULL DEFAULT now()
);
