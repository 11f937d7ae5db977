-- The token's holder, when the token is known and not revoked; marks it used (at most once a minute).
UPDATE api_tokens SET last_used_at = now()
WHERE token_sha256 = %(token_sha256)s AND revoked_at IS NULL
  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
RETURNING id, name, role
