INSERT INTO model_promotions (model_id, previous_model_id, actor, note)
VALUES (%(model_id)s, %(previous_model_id)s, %(actor)s, %(note)s)
