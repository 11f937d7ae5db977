SELECT id, detector, parameters, features, trained_from, trained_to, training_windows, training_rows,
       training_hosts, threshold, training, validation, artifact_sha256, length(artifact) AS artifact_bytes,
       reason, created_at, status
FROM models
ORDER BY id DESC
LIMIT %(limit)s
