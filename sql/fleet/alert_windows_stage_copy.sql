COPY alert_windows_stage (alert_id, window_start, app, process_path, protocol, remote_address,
                          service_port, direction, bytes_sent, bytes_received, connections, score) FROM STDIN
