-- Record one applied migration (in the transaction that applied it).
INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s);
