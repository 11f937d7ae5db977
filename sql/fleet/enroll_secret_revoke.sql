-- Stop accepting one secret (the simulator's temporary one).
UPDATE enroll_secrets SET revoked_at = now() WHERE secret_sha256 = %(secret_sha256)s AND revoked_at IS NULL
