-- Set the progress mark :key to :value, in the same transaction as the append it accounts for.
INSERT INTO spool_state (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
