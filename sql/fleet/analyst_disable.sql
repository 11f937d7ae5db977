-- Disable an account: it cannot log in, and its sessions end at their next request.
UPDATE analysts SET disabled_at = now(), session_epoch = session_epoch + 1
WHERE username = %(username)s AND disabled_at IS NULL
RETURNING id
