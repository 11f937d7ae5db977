UPDATE models SET status = 'active' WHERE id = %(model_id)s
