-- Remove an admin pack; returns its name when it existed.
DELETE FROM packs WHERE name = %(name)s RETURNING name;
