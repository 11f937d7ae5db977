-- An account for a login attempt (locked for the attempt's duration, so concurrent wrong passwords
-- all count).
SELECT id, username, password_hash, role, session_epoch, failed_logins, locked_until > now() AS locked,
       disabled_at IS NOT NULL AS disabled
FROM analysts WHERE username = %(username)s
FOR UPDATE
