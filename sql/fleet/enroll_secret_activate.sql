-- Make a secret active (added, or accepted again if it was revoked).
INSERT INTO enroll_secrets (secret_sha256) VALUES (%(secret_sha256)s)
ON CONFLICT (secret_sha256) DO UPDATE SET revoked_at = NULL
RETURNING id;
