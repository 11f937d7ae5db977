SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id
