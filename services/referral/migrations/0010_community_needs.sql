-- Issue 18 (community needs and levels, decision 17).
-- The levels a listing works at, derived from the listing document on every write, as the
-- columns of migration 0006 (a listing of before has none: individual). Matching parses it
-- once per distinct value, as it does the eligibility.
ALTER TABLE listings ADD COLUMN levels text
    GENERATED ALWAYS AS (coalesce(listing -> 'levels', '["individual"]'::jsonb)::text) STORED;

-- A community need is a case of kind community: one need, the area it lies in (kept in
-- profile.return_area, which every evidence query groups by), how many people it affects and
-- the share of returnees among them; no consent applies (no person is concerned).
ALTER TABLE cases ADD COLUMN kind text NOT NULL DEFAULT 'individual'
    CHECK (kind IN ('individual', 'community'));
ALTER TABLE cases ADD COLUMN people_affected int CHECK (people_affected >= 1);
ALTER TABLE cases ADD COLUMN returnee_share double precision CHECK (returnee_share BETWEEN 0 AND 1);
ALTER TABLE cases ALTER COLUMN consent DROP NOT NULL;
ALTER TABLE cases ADD CONSTRAINT cases_community_check CHECK (
    (kind = 'individual' AND consent IS NOT NULL)
    OR (kind = 'community' AND consent IS NULL AND people_affected IS NOT NULL
        AND returnee_share IS NOT NULL));
