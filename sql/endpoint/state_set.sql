-- Set one value of agent_state (:key, :value), replacing any previous value.
INSERT INTO agent_state (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
