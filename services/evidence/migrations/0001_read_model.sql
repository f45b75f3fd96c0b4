-- The evidence read model: pseudonymous facts of cases, referrals, unmet needs, handovers,
-- follow-ups and assessment scores, as read from intake.cases.v1 and referral.events.v1.
-- No name, contact, document, birth year or free text: what a case row holds is what the
-- aggregates break figures down by. Aggregates are computed from these rows (aggregation.py).

CREATE TABLE cases (
    case_id          text PRIMARY KEY,
    owner_agency_id  text        NOT NULL,
    level            text        NOT NULL,  -- individual | community (a community need)
    area             text        NOT NULL,  -- the return area (a community need's area)
    sex              text,                  -- null for a community need
    age_band         text,                  -- from age_band, or birth_year at registration
    vulnerabilities  text[]      NOT NULL DEFAULT '{}',
    -- The consent includes statistics (a community need, with no person, always counts).
    statistics       boolean     NOT NULL,
    registered_at    timestamptz NOT NULL,
    ended            text,                  -- closed | erased
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE needs (
    case_id    text NOT NULL REFERENCES cases ON DELETE CASCADE,
    need_id    text NOT NULL,
    category   text NOT NULL,
    dimension  text NOT NULL,
    level      text NOT NULL,
    PRIMARY KEY (case_id, need_id)
);

-- One row per referral; its latest state and the facts the figures need.
CREATE TABLE referrals (
    referral_id   text PRIMARY KEY,
    case_id       text        NOT NULL,
    need_id       text        NOT NULL,
    category      text        NOT NULL,
    provider_id   text        NOT NULL,  -- the recipient agency
    requested_at  timestamptz NOT NULL,
    answered_at   timestamptz,           -- the recipient's first answer (received/accepted/...)
    state         text        NOT NULL,
    accepted      boolean     NOT NULL DEFAULT false,  -- ever accepted
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referrals_case ON referrals (case_id);

-- A need told unmatched: the latest reason (a need routed later stays here: it was a gap).
CREATE TABLE unmet_needs (
    case_id      text        NOT NULL,
    need_id      text        NOT NULL,
    category     text        NOT NULL,
    reason       text        NOT NULL,
    unmatched_at timestamptz NOT NULL,
    PRIMARY KEY (case_id, need_id)
);

CREATE TABLE handovers (
    handover_id  text PRIMARY KEY,
    case_id      text        NOT NULL,
    state        text        NOT NULL,  -- proposed | accepted | rejected | expired | completed | failed
    at           timestamptz NOT NULL
);
CREATE INDEX handovers_case ON handovers (case_id);

-- The scores of one assessment per case and wave (a resubmission replaces them).
CREATE TABLE assessments (
    case_id       text NOT NULL,
    wave          text NOT NULL,
    assessed_on   date NOT NULL,
    economic      double precision,
    social        double precision,
    psychosocial  double precision,
    composite     double precision,
    PRIMARY KEY (case_id, wave)
);

-- Follow-up waves intake announced as due or missed (done: an assessment of the wave).
CREATE TABLE follow_ups (
    case_id  text NOT NULL,
    wave     text NOT NULL,
    due_on   date NOT NULL,
    stage    text NOT NULL,  -- due | missed
    PRIMARY KEY (case_id, wave)
);

-- What evidence.aggregates.v1 last carried per table and period: published again only when
-- the digest of its figures changes.
CREATE TABLE published_aggregates (
    table_name    text NOT NULL,
    period        text NOT NULL,
    digest        text NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, period)
);
