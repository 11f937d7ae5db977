-- Revoke every active secret but the given one; returns how many were revoked.
UPDATE enroll_secrets SET revoked_at = now()
WHERE revoked_at IS NULL AND secret_sha256 <> %(secret_sha256)s
RETURNING id;
