-- A node fetched its configuration.
UPDATE hosts SET last_seen_at = now(), last_config_at = now() WHERE id = %(host_id)s;
