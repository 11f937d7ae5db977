-- Enrolled hosts, most recently seen first (the hosts command).
SELECT host_identifier, hostname, platform, os_version, osquery_version, enrolled_at, last_seen_at,
       last_config_at, last_log_at
FROM hosts
ORDER BY last_seen_at DESC, id;
