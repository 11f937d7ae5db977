-- Spool one log line (:log_type, :data, :bytes, :created).
INSERT INTO spool (log_type, data, bytes, created) VALUES (:log_type, :data, :bytes, :created);
