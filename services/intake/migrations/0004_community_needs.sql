-- Issue 18 (community needs, decision 17): the community needs agencies report. No person is
-- concerned, but the description is free text that may name one: it is kept as personal data
-- is (a secret box under a data key of its own, wrapped by the master key; erasure destroys
-- the key), and leaves intake only sealed to the provider a referral names.
CREATE TABLE community_needs (
    need_id             uuid PRIMARY KEY,          -- the case_id of the events
    agency_id           text NOT NULL,
    agency_case_ref     text NOT NULL,
    status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'erased')),
    area                text NOT NULL,
    category            text NOT NULL,
    urgency             text NOT NULL,
    people_affected     int  NOT NULL CHECK (people_affected >= 1),
    returnee_share      double precision NOT NULL CHECK (returnee_share BETWEEN 0 AND 1),
    wrapped_key         bytea,                     -- NULL once erased
    description_sealed  bytea,                     -- NULL once erased
    closed_reason       text,
    submitted_at        timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agency_id, agency_case_ref),
    CHECK ((wrapped_key IS NULL) = (status = 'erased'))
);

-- The disclosure log also records a community need's brief sealed for a referral's provider:
-- its own kind, naming the community need instead of a case.
ALTER TABLE disclosure_log ADD COLUMN community_need_id uuid REFERENCES community_needs (need_id);
ALTER TABLE disclosure_log ALTER COLUMN case_id DROP NOT NULL;
ALTER TABLE disclosure_log DROP CONSTRAINT disclosure_log_kind_check;
ALTER TABLE disclosure_log ADD CONSTRAINT disclosure_log_kind_check
    CHECK (kind IN ('referral', 'handover', 'community_need'));
ALTER TABLE disclosure_log DROP CONSTRAINT disclosure_log_kind_id_check;
ALTER TABLE disclosure_log ADD CONSTRAINT disclosure_log_kind_id_check CHECK (
    (kind = 'referral' AND referral_id IS NOT NULL AND handover_id IS NULL
        AND case_id IS NOT NULL)
    OR (kind = 'handover' AND handover_id IS NOT NULL AND referral_id IS NULL
        AND case_id IS NOT NULL)
    OR (kind = 'community_need' AND referral_id IS NOT NULL AND community_need_id IS NOT NULL
        AND case_id IS NULL));
