INSERT INTO alerts (host_id, model_id, dedup_key, app, process_name, process_path, process_sha256,
                    username, protocol, remote_address, service_port, destinations, first_window,
                    last_window, windows, score, threshold, severity, explanation, reasons, status)
VALUES (%(host_id)s, %(model_id)s, %(dedup_key)s, %(app)s, %(process_name)s, %(process_path)s,
        %(process_sha256)s, %(username)s, %(protocol)s, %(remote_address)s, %(service_port)s,
        %(destinations)s, %(first_window)s, %(last_window)s, %(windows)s, %(score)s, %(threshold)s,
        %(severity)s, %(explanation)s, %(reasons)s, %(status)s)
RETURNING id
