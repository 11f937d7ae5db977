-- Delete raw rows older than the raw retention that are already aggregated.
-- Parameters: :cutoff (epoch s: rows whose time is before it are old enough),
--             :watermark (the next window still to be aggregated; NULL before the first aggregation,
--             which deletes nothing).
DELETE FROM socket_events
WHERE time < :cutoff AND window_start < :watermark;
