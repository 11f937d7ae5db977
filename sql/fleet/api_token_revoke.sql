UPDATE api_tokens SET revoked_at = now() WHERE id = %(token_id)s AND revoked_at IS NULL RETURNING id
