-- Triage many alerts at once: a new status (and a note when given) and who changed it.
UPDATE alerts SET
    status = %(status)s,
    note = coalesce(%(note)s, note),
    status_changed_by = %(actor)s,
    updated_at = now()
WHERE id = ANY(%(alert_ids)s::bigint[])
RETURNING id
