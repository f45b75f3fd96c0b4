-- Personal data only encrypted, per case (crypto-shredding); consent versions; case history;
-- duplicate links; disclosure log; the agency registry intake needs for disclosures.

ALTER TABLE cases DROP COLUMN personal;
ALTER TABLE cases ADD COLUMN personal_sealed bytea;          -- secret box under the data key
ALTER TABLE cases ADD COLUMN status text NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'closed', 'erased'));
ALTER TABLE cases ADD COLUMN consent_version int NOT NULL DEFAULT 1;
ALTER TABLE cases ADD COLUMN closed_reason text;

-- The data key of each case, wrapped under the master key. Erasure sets wrapped_key to NULL.
CREATE TABLE case_keys (
    case_id       uuid PRIMARY KEY REFERENCES cases (case_id),
    wrapped_key   bytea,
    destroyed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);

-- Every consent version, given, changed or withdrawn: never updated, only appended.
CREATE TABLE consent_records (
    case_id          uuid NOT NULL REFERENCES cases (case_id),
    version          int  NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('given', 'changed', 'withdrawn', 'refused')),
    consent          jsonb NOT NULL,
    source_event_id  text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, version)
);

-- Pseudonymous audit trail of everything that happened to a case (no personal data).
CREATE TABLE case_history (
    id               bigserial PRIMARY KEY,
    case_id          uuid NOT NULL REFERENCES cases (case_id),
    action           text NOT NULL,
    source_event_id  text NOT NULL,
    agency_id        text,
    details          jsonb NOT NULL DEFAULT '{}',
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_history_case ON case_history (case_id, id);

-- Keyed hashes of normalised identity fields (services/intake/identity.py).
CREATE TABLE identity_hashes (
    case_id  uuid  NOT NULL REFERENCES cases (case_id),
    key_id   text  NOT NULL,
    hash     bytea NOT NULL,
    PRIMARY KEY (case_id, key_id, hash)
);
CREATE INDEX identity_hashes_lookup ON identity_hashes (key_id, hash);

CREATE TABLE duplicate_links (
    case_id        uuid NOT NULL REFERENCES cases (case_id),
    other_case_id  uuid NOT NULL REFERENCES cases (case_id),
    detected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, other_case_id)
);

-- Agencies as published on directory.agencies.v1 (type and public key decide disclosures).
CREATE TABLE agencies (
    agency_id   text PRIMARY KEY,
    type        text NOT NULL,
    public_key  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every disclosure decision: which case, which agency, when, under which consent version.
CREATE TABLE disclosure_log (
    referral_id          text PRIMARY KEY,       -- one decision per referral (idempotent)
    disclosure_id        text NOT NULL UNIQUE,
    case_id              uuid NOT NULL REFERENCES cases (case_id),
    recipient_agency_id  text NOT NULL,
    outcome              text NOT NULL CHECK (outcome IN ('disclosed', 'refused')),
    reason               text,
    consent_version      int,
    recipient_key_sha256 text,
    source_event_id      text NOT NULL,
    at                   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disclosure_log_case ON disclosure_log (case_id, at);

ALTER TABLE submissions DROP CONSTRAINT submissions_outcome_check;
ALTER TABLE submissions ADD CONSTRAINT submissions_outcome_check CHECK (outcome IN (
    'registered', 'updated', 'rejected', 'consent_withdrawn', 'erased', 'closed'));
