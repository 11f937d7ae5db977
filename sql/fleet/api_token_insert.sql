INSERT INTO api_tokens (name, token_sha256, role) VALUES (%(name)s, %(token_sha256)s, %(role)s)
RETURNING id
