INSERT INTO models (detector, parameters, features, trained_from, trained_to, training_windows,
                    training_rows, training_hosts, threshold, training, validation, artifact,
                    artifact_sha256, artifact_hmac, reason)
VALUES (%(detector)s, %(parameters)s, %(features)s, %(trained_from)s, %(trained_to)s,
        %(training_windows)s, %(training_rows)s, %(training_hosts)s, %(threshold)s, %(training)s,
        %(validation)s, %(artifact)s, %(artifact_sha256)s, %(artifact_hmac)s, %(reason)s)
RETURNING id
