-- Every persisted counter: name (the key without :prefix) and value.
SELECT substr(key, length(:prefix) + 1) AS name, value
FROM agent_state
WHERE substr(key, 1, length(:prefix)) = :prefix
ORDER BY key;
