-- A wrong password: counted; at %(max_failures)s in a row the account locks for %(lock_seconds)s s.
UPDATE analysts
SET failed_logins = failed_logins + 1,
    locked_until = CASE WHEN failed_logins + 1 >= %(max_failures)s
                        THEN now() + make_interval(secs => %(lock_seconds)s) ELSE locked_until END
WHERE id = %(analyst_id)s
