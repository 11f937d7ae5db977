-- Detection: the model registry, scoring progress, alerts and the flow windows behind them, analyst
-- API tokens.

-- Where a batch's flow windows lie, so scoring finds its rows through flows_host_window.
ALTER TABLE ingest_batches ADD COLUMN flow_window_min bigint, ADD COLUMN flow_window_max bigint;
CREATE INDEX ingest_batches_unscored ON ingest_batches (id) WHERE flow_rows > 0;

-- A host's flow windows over time: scoring (the batch's rows, the beaconing look-back) and the
-- dashboard's host pages.
CREATE INDEX flows_host_window ON flows (host_id, window_start);

-- Every trained model. The artifact is the pickled model, loaded only when its sha256 and its
-- HMAC-SHA256 under the service's model key both match. At most one model is active; promotion and
-- rollback are rows in model_promotions.
CREATE TABLE models (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the model's version number
    detector text NOT NULL,               -- iforest | hbos | ecod | copod | ensemble
    parameters jsonb NOT NULL,            -- the detector's parameters, contamination included
    features text[] NOT NULL,             -- feature names, in the detector's column order
    trained_from bigint NOT NULL,         -- epoch s: first window_start of the training period
    trained_to bigint NOT NULL,           -- epoch s: last window_start of the training period
    training_windows bigint NOT NULL,     -- flow windows in the training period
    training_rows bigint NOT NULL,        -- flow rows they were summed from
    training_hosts integer NOT NULL,
    threshold double precision NOT NULL,  -- scores above it are anomalous
    training jsonb NOT NULL,              -- training figures (score quantiles, folds, judged windows)
    validation jsonb NOT NULL,            -- held-out span: windows, alerts per host-day, histogram
    artifact bytea NOT NULL,
    artifact_sha256 text NOT NULL,
    artifact_hmac text NOT NULL,
    reason text NOT NULL DEFAULT '',      -- why it was trained: nightly, on demand, cli
    created_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'active', 'retired'))
);
CREATE UNIQUE INDEX models_one_active ON models ((true)) WHERE status = 'active';

CREATE TABLE model_promotions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id bigint NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    previous_model_id bigint REFERENCES models (id) ON DELETE SET NULL,
    actor text NOT NULL,                  -- who: a user, a token name, "auto" (first model), "cli"
    note text NOT NULL DEFAULT '',
    promoted_at timestamptz NOT NULL DEFAULT now()
);

-- Scoring progress: one row per ingested batch scored (by which model, with what outcome). A batch
-- without a row here is pending; the catch-up task scores them oldest first.
CREATE TABLE scored_batches (
    batch_id bigint PRIMARY KEY REFERENCES ingest_batches (id) ON DELETE CASCADE,
    model_id bigint REFERENCES models (id) ON DELETE SET NULL,
    run_id bigint,                        -- task_runs.id of the scoring run (its alert counts)
    scored_at timestamptz NOT NULL DEFAULT now(),
    windows integer NOT NULL DEFAULT 0,   -- flow windows scored
    anomalous integer NOT NULL DEFAULT 0, -- windows above the threshold
    max_score double precision,
    skipped text NOT NULL DEFAULT ''      -- why nothing was scored ('' when scored)
);

CREATE TABLE alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    model_id bigint REFERENCES models (id) ON DELETE SET NULL,
    dedup_key text NOT NULL,              -- application | destination ('*' for fan-out alerts)
    app text NOT NULL,                    -- the application: generalised executable path (features.app_key)
    process_name text NOT NULL,
    process_path text NOT NULL,
    process_sha256 text NOT NULL,
    username text NOT NULL,
    protocol text,                        -- NULL for fan-out alerts (many destinations)
    remote_address inet,
    service_port integer,                 -- the remote port outbound, the local port inbound
    destinations integer NOT NULL,
    first_window bigint NOT NULL,         -- epoch s
    last_window bigint NOT NULL,          -- epoch s
    windows integer NOT NULL,             -- anomalous windows merged into it
    score double precision NOT NULL,      -- the highest
    threshold double precision NOT NULL,
    severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    explanation text NOT NULL,
    reasons jsonb NOT NULL,               -- [{feature, surprise, text}], most surprising first
    status text NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'acknowledged', 'resolved', 'false_positive', 'suppressed')),
    note text NOT NULL DEFAULT '',
    status_changed_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_dedup ON alerts (host_id, dedup_key, last_window DESC);
CREATE INDEX alerts_created ON alerts (created_at DESC, id DESC);
CREATE INDEX alerts_status_severity ON alerts (status, severity, id DESC);
CREATE INDEX alerts_host_day ON alerts (host_id, ((first_window / 86400)));

-- The flow windows behind each alert (summed over the endpoint's rows: see features.flow_windows).
CREATE TABLE alert_windows (
    alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    window_start bigint NOT NULL,
    app text NOT NULL,
    process_path text NOT NULL,
    protocol text NOT NULL,
    remote_address inet NOT NULL,
    service_port integer NOT NULL,        -- the remote port outbound, the local port inbound
    direction text NOT NULL,
    bytes_sent bigint NOT NULL,
    bytes_received bigint NOT NULL,
    connections bigint NOT NULL,
    score double precision NOT NULL,
    PRIMARY KEY (alert_id, window_start, app, process_path, protocol, remote_address, service_port,
                 direction)
);

-- Analyst API tokens: only the sha256 is stored.
CREATE TABLE api_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    token_sha256 bytea NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('admin', 'analyst')),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

-- Task runs that are not per batch (training, maintenance): what ran, how it ended.
CREATE TABLE task_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed', 'skipped')),
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX task_runs_task ON task_runs (task, started_at DESC);
