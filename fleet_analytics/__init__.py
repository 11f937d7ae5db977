"""The fleet-side analytics service: osquery TLS ingest into PostgreSQL, detection and the analyst
dashboard. Not built yet: see the open issues (4, 5, 6) and ARCHITECTURE.md."""
