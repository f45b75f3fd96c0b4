-- Issue 18, consent that follows through (decision 20).

-- A recipient's confirmation that it erased what a referral's disclosure gave it, recorded on
-- the disclosure's own entry of the log (one confirmation per disclosure).
ALTER TABLE disclosure_log ADD COLUMN erased_at timestamptz;
ALTER TABLE disclosure_log ADD COLUMN erasure_submission_id text;
ALTER TABLE disclosure_log ADD COLUMN erasure_recorded_at timestamptz;

ALTER TABLE submissions DROP CONSTRAINT submissions_outcome_check;
ALTER TABLE submissions ADD CONSTRAINT submissions_outcome_check CHECK (outcome IN (
    'registered', 'updated', 'rejected', 'consent_withdrawn', 'erased', 'closed',
    'assistance_ended', 'erasure_confirmed'));

-- Each pair of cases of two agencies found to be probably one person, once (the lower case id
-- first): whether both owners were told (both consents allow it) or why not. A pair recorded
-- untold is told when a later check finds both consents allowing it.
CREATE TABLE possible_duplicates (
    case_id        uuid        NOT NULL,
    other_case_id  uuid        NOT NULL,
    told           boolean     NOT NULL,
    not_told_why   text,
    found_at       timestamptz NOT NULL DEFAULT now(),
    told_at        timestamptz,
    PRIMARY KEY (case_id, other_case_id),
    CHECK (case_id < other_case_id),
    CHECK (told = (not_told_why IS NULL))
);
