-- fleet_ensure_flow_partition, safe under concurrency: two batches needing the same new day at once
-- both ran CREATE TABLE IF NOT EXISTS, and the loser failed with duplicate_table (IF NOT EXISTS does not
-- see a table another transaction has not committed yet). Creators now queue on a transaction-scoped
-- advisory lock, so the second sees the first one's committed table and does nothing.
CREATE OR REPLACE FUNCTION fleet_ensure_flow_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('flows_%s', to_char(day, 'YYYYMMDD'));
    lower_bound bigint := extract(epoch FROM day::timestamp AT TIME ZONE 'UTC')::bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7426175);
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF flows FOR VALUES FROM (%s) TO (%s)',
        part, lower_bound, lower_bound + 86400
    );
    RETURN part;
END;
$$;
