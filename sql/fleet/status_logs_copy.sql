-- Bulk load of status log lines.
COPY status_logs (
    host_id, batch_id, severity, filename, line, message, version, unix_time, decorations
) FROM STDIN
