-- Every analyst account (the CLI's `users`).
SELECT username, role, created_at, last_login_at, disabled_at IS NOT NULL AS disabled,
       locked_until > now() AS locked
FROM analysts ORDER BY username
