"""osquery TLS ingest: request parsing (protocol), sanitising filters (filters, the specification),
the same decisions per column for clean batches (columnar), the writes (store) and the HTTP endpoints
(views)."""
