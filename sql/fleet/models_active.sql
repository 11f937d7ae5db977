SELECT id, artifact, artifact_sha256, artifact_hmac FROM models WHERE status = 'active'
