-- Hosts by how recently they were heard from.
SELECT count(*) FILTER (WHERE last_seen_at >= now() - interval '15 minutes') AS seen_15m,
       count(*) FILTER (WHERE last_seen_at >= now() - interval '24 hours') AS seen_24h,
       count(*) AS hosts
FROM hosts
