UPDATE task_runs SET finished_at = now(), status = %(status)s, detail = detail || %(detail)s::jsonb
WHERE id = %(run_id)s
