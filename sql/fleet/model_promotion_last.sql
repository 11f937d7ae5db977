-- The latest promotion: rollback returns to its previous model.
SELECT model_id, previous_model_id FROM model_promotions ORDER BY id DESC LIMIT 1
