-- The packs added by admins.
SELECT name, pack, updated_at FROM packs ORDER BY name;
