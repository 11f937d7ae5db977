"""osquery TLS ingest: request parsing (protocol), sanitising filters (filters), the writes (store) and
the HTTP endpoints (views)."""
