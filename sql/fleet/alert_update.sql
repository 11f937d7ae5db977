-- Triage: a new status and/or note, and who changed it.
UPDATE alerts SET
    status = coalesce(%(status)s, status),
    note = coalesce(%(note)s, note),
    status_changed_by = %(actor)s,
    updated_at = now()
WHERE id = %(alert_id)s
RETURNING id
