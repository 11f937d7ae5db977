-- A good password: the failure count resets.
UPDATE analysts SET failed_logins = 0, locked_until = NULL, last_login_at = now() WHERE id = %(analyst_id)s
