-- The earliest window present in the raw rows (NULL when there are none): where the first
-- aggregation starts when no watermark is stored yet.
SELECT min(window_start) AS window_start FROM socket_events;
