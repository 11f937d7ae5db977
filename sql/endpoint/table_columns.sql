-- The column names of one of the store's tables (:table), to whitelist the columns of pushed-down
-- constraints (Store.query_table).
SELECT name FROM pragma_table_info(:table);
