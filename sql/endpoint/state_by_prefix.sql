-- Every agent_state value whose key starts with :prefix ('counter:' for the persisted counters,
-- 'info:' for what the running agent reports about itself): name (the key without the prefix), value.
SELECT substr(key, length(:prefix) + 1) AS name, value
FROM agent_state
WHERE substr(key, 1, length(:prefix)) = :prefix
ORDER BY key;
