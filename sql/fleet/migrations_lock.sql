-- One migrator at a time (a transaction-scoped advisory lock; the number is this project's own).
SELECT pg_advisory_xact_lock(7426173);
