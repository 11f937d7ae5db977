-- Per-connection settings, run by Store when it opens the database (before schema.sql).
--   WAL: readers (osquery table plugins, status) never block the writer, nor the writer them.
--   synchronous NORMAL: durable across a process crash; in WAL mode a power loss can lose at most
--   the last transactions, never corrupt the database.
--   busy_timeout: wait for another writer (a second agent or a manual sqlite3 session) this many ms.
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 10000;
