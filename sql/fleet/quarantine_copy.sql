-- Bulk load of what the filters set aside.
COPY quarantine (host_id, batch_id, log_type, query_name, filter, reason, item) FROM STDIN
