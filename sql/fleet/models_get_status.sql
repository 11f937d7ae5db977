SELECT status FROM models WHERE id = %(model_id)s
