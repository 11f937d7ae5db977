-- One value of agent_state, by :key (no row when unset).
SELECT value FROM agent_state WHERE key = :key;
