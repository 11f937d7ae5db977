-- Retention of the rollups: rows of hours (days) before %(before)s (epoch s) go.
WITH t AS (DELETE FROM traffic_hourly WHERE hour < %(before)s RETURNING 1),
     a AS (DELETE FROM app_hourly WHERE hour < %(before)s RETURNING 1),
     d AS (DELETE FROM destination_hourly WHERE hour < %(before)s RETURNING 1),
     ha AS (DELETE FROM host_apps_daily WHERE day < %(before)s RETURNING 1),
     hd AS (DELETE FROM host_destinations_daily WHERE day < %(before)s RETURNING 1)
SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM a) + (SELECT count(*) FROM d)
       + (SELECT count(*) FROM ha) + (SELECT count(*) FROM hd)
