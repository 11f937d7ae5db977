-- What the open connection actually runs with (WAL can be refused, e.g. on some network file systems).
SELECT
    (SELECT journal_mode FROM pragma_journal_mode) AS journal_mode,
    (SELECT user_version FROM pragma_user_version) AS user_version;
