-- The hashes of the enroll secrets accepted now.
SELECT secret_sha256 FROM enroll_secrets WHERE revoked_at IS NULL ORDER BY id;
