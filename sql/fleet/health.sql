-- Liveness of the database for /healthz.
SELECT 1;
