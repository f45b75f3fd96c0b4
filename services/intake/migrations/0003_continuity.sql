-- Continuity (decision 16): the end of the owner's assistance, cases handed over between
-- agencies, and the personal data sealed for a case's new owner in the disclosure log.

-- The owner's own assistance ended (the case stays open); cleared when the case changes hands:
-- a new owner starts with its assistance running.
ALTER TABLE cases ADD COLUMN assistance_ended_at timestamptz;
ALTER TABLE cases ADD COLUMN assistance_end_reason text;
ALTER TABLE cases ADD CONSTRAINT cases_assistance_end_check
    CHECK ((assistance_ended_at IS NULL) = (assistance_end_reason IS NULL));

-- The (agency, reference) pairs a case had before it was handed over: a former owner's write
-- under its old reference is refused with who the case went to, never taken for a new case.
-- A pair names one case for ever (as a closed case's reference does), unless the case comes
-- back to that owner under it.
CREATE TABLE former_owners (
    agency_id        text        NOT NULL,
    agency_case_ref  text        NOT NULL,
    case_id          uuid        NOT NULL REFERENCES cases (case_id),
    to_agency_id     text        NOT NULL,  -- whom this owner handed it to
    handover_id      text        NOT NULL,
    handed_over_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, agency_case_ref)
);
CREATE INDEX former_owners_case ON former_owners (case_id);

-- The disclosure log holds two kinds of decision: a referral's minimum contact details and a
-- handed-over case's whole personal data. Each kind keeps its own id in its own column (an
-- operator or an audit reading `referral_id` must find referrals there, nothing else), and each
-- is decided once: one row per referral, one per handover.
ALTER TABLE disclosure_log ADD COLUMN kind text NOT NULL DEFAULT 'referral'
    CHECK (kind IN ('referral', 'handover'));
ALTER TABLE disclosure_log ADD COLUMN handover_id text UNIQUE;
ALTER TABLE disclosure_log DROP CONSTRAINT disclosure_log_pkey;
ALTER TABLE disclosure_log ALTER COLUMN referral_id DROP NOT NULL;
ALTER TABLE disclosure_log ADD CONSTRAINT disclosure_log_referral_id_key UNIQUE (referral_id);
ALTER TABLE disclosure_log DROP CONSTRAINT disclosure_log_disclosure_id_key;
ALTER TABLE disclosure_log ADD PRIMARY KEY (disclosure_id);
ALTER TABLE disclosure_log ADD CONSTRAINT disclosure_log_kind_id_check CHECK (
    (kind = 'referral' AND referral_id IS NOT NULL AND handover_id IS NULL)
    OR (kind = 'handover' AND handover_id IS NOT NULL AND referral_id IS NULL));

ALTER TABLE submissions DROP CONSTRAINT submissions_outcome_check;
ALTER TABLE submissions ADD CONSTRAINT submissions_outcome_check CHECK (outcome IN (
    'registered', 'updated', 'rejected', 'consent_withdrawn', 'erased', 'closed',
    'assistance_ended'));
