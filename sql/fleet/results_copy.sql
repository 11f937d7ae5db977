-- Bulk load of the rows of other queries.
COPY results (host_id, batch_id, name, action, unix_time, columns, decorations) FROM STDIN
