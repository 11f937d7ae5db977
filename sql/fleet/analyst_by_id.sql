-- The account behind a session, checked on every dashboard request.
SELECT id, username, role, session_epoch, disabled_at IS NOT NULL AS disabled
FROM analysts WHERE id = %(analyst_id)s
