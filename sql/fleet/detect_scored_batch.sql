-- A batch scored (or looked at and skipped, with the reason).
INSERT INTO scored_batches (batch_id, model_id, run_id, windows, anomalous, max_score, skipped)
VALUES (%(batch_id)s, %(model_id)s, %(run_id)s, %(windows)s, %(anomalous)s, %(max_score)s, %(skipped)s)
ON CONFLICT (batch_id) DO NOTHING
