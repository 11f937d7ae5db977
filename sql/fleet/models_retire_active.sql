UPDATE models SET status = 'retired' WHERE status = 'active' RETURNING id
