-- A repeat within the cooldown joins its alert: the span widens, the highest score and its words win.
UPDATE alerts SET
    first_window = least(first_window, %(first_window)s),
    last_window = greatest(last_window, %(last_window)s),
    windows = windows + %(windows)s,
    destinations = greatest(destinations, %(destinations)s),
    explanation = CASE WHEN %(score)s > score THEN %(explanation)s ELSE explanation END,
    reasons = CASE WHEN %(score)s > score THEN %(reasons)s::jsonb ELSE reasons END,
    severity = CASE WHEN %(score)s > score THEN %(severity)s ELSE severity END,
    score = greatest(score, %(score)s),
    updated_at = now()
WHERE id = %(alert_id)s
