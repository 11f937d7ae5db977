SELECT id, name, role FROM api_tokens WHERE token_sha256 = %(token_sha256)s AND revoked_at IS NULL
