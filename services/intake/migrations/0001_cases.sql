-- Case registry. NOTE: personal data is stored as plain JSONB in this walking skeleton;
-- the intake issue replaces it with per-case encrypted storage (crypto-shredding).
CREATE TABLE cases (
    case_id          uuid PRIMARY KEY,
    agency_id        text        NOT NULL,
    agency_case_ref  text        NOT NULL,
    profile          jsonb       NOT NULL,
    needs            jsonb       NOT NULL,
    consent          jsonb       NOT NULL,
    personal         jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agency_id, agency_case_ref)
);

-- Every submission received, accepted or not: the audit trail of what each agency sent.
CREATE TABLE submissions (
    submission_id  text PRIMARY KEY,
    agency_id      text,
    case_id        uuid REFERENCES cases (case_id),
    outcome        text        NOT NULL CHECK (outcome IN ('registered', 'updated', 'rejected')),
    received_at    timestamptz NOT NULL DEFAULT now()
);
