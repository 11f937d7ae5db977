-- The applied migrations: one row per file of sql/fleet/migrations/ (NNNN_slug.sql), forward only.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,          -- NNNN of the file name
    name text NOT NULL,                   -- the file name
    checksum text NOT NULL,               -- sha256 of the file when it was applied
    applied_at timestamptz NOT NULL DEFAULT now()
);
