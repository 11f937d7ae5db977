-- Whether the migrations table exists yet (an empty database has none).
SELECT to_regclass('schema_migrations') IS NOT NULL;
