"""The fleet-side analytics service: osquery TLS ingest into PostgreSQL, detection and the analyst
dashboard (issues 4-6). Built so far: the schema migrations runner (db.py) and the embedded
PostgreSQL default (embedded.py), with `python -m fleet_analytics migrate`."""
