-- Every case event asks whether each of its needs already has a referral chain (and which
-- services it tried): `WHERE case_id = $1 AND need_id = $2`. Migration 0002 replaced the unique
-- constraint on (case_id, need_id) by a partial index over open referrals only, so those
-- lookups scanned the whole table, once per need (found by make bench: about 1 ms per lookup at
-- 7,000 referrals, growing with every referral).
CREATE INDEX referrals_by_need ON referrals (case_id, need_id);
