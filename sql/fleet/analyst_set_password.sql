-- A new password (and optionally role) for an existing account; older sessions end (session_epoch),
-- the lockout is lifted and the account enabled again.
UPDATE analysts
SET password_hash = %(password_hash)s, role = coalesce(%(role)s, role), session_epoch = session_epoch + 1,
    failed_logins = 0, locked_until = NULL, disabled_at = NULL
WHERE username = %(username)s
RETURNING id
