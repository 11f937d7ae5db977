-- Enroll a node: a new host, or a new node key for a host identifier seen before (the old key stops
-- working; the host keeps its history).
INSERT INTO hosts (
    host_identifier, node_key_sha256, hostname, uuid, platform, os_version, osquery_version, host_details
) VALUES (
    %(host_identifier)s, %(node_key_sha256)s, %(hostname)s, %(uuid)s, %(platform)s, %(os_version)s,
    %(osquery_version)s, %(host_details)s::jsonb
)
ON CONFLICT (host_identifier) DO UPDATE SET
    node_key_sha256 = EXCLUDED.node_key_sha256,
    hostname = EXCLUDED.hostname,
    uuid = EXCLUDED.uuid,
    platform = EXCLUDED.platform,
    os_version = EXCLUDED.os_version,
    osquery_version = EXCLUDED.osquery_version,
    host_details = EXCLUDED.host_details,
    enrolled_at = now(),
    last_seen_at = now()
RETURNING id;
