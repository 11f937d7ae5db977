INSERT INTO task_runs (task, detail) VALUES (%(task)s, %(detail)s) RETURNING id
