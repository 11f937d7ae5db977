SELECT id FROM models WHERE status = 'active'
