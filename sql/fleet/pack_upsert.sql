-- Add or replace an admin pack.
INSERT INTO packs (name, pack) VALUES (%(name)s, %(pack)s::jsonb)
ON CONFLICT (name) DO UPDATE SET pack = EXCLUDED.pack, updated_at = now();
