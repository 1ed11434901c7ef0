-- Challenges are bounded per address: ip_group is the address (IPv4) or its
-- /64 (IPv6, where one client holds a whole /64), and a new challenge drops
-- the oldest of its group beyond the limit (see ChallengeStore).
ALTER TABLE challenges ADD COLUMN ip_group TEXT NOT NULL DEFAULT '';
UPDATE challenges SET ip_group = ip;
CREATE INDEX challenges_group ON challenges (ip_group, expires_ms, challenge);
