-- A new analyst account (create-user); the caller hashes the password.
INSERT INTO analysts (username, password_hash, role)
VALUES (%(username)s, %(password_hash)s, %(role)s)
RETURNING id
