-- Add :delta to the persisted counter stored under :key ('counter:<name>'), creating it at :delta.
INSERT INTO agent_state (key, value) VALUES (:key, :delta)
ON CONFLICT (key) DO UPDATE SET value = value + excluded.value;
