-- Delete flows whose window started before :cutoff (epoch s: now minus the flow retention).
DELETE FROM flows
WHERE window_start < :cutoff;
