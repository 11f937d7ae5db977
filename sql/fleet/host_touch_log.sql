-- A node's log batch was stored (in the batch's transaction).
UPDATE hosts SET last_seen_at = now(), last_log_at = now() WHERE id = %(host_id)s;
