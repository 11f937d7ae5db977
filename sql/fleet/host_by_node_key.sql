-- The host a node key belongs to (keys are stored as sha256 only).
SELECT id, host_identifier FROM hosts WHERE node_key_sha256 = %(node_key_sha256)s;
