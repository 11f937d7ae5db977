-- One secret change at a time (start-up of several workers, the CLI).
SELECT pg_advisory_xact_lock(7426174);
