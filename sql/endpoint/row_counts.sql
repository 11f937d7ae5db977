-- Rows in each table (Store.row_counts; shown by status and net_agent_status).
SELECT
    (SELECT count(*) FROM socket_events) AS socket_events,
    (SELECT count(*) FROM flows) AS flows;
