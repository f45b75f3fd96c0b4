-- Issue 19, follow-ups and assessments (decision 21).

-- Each wave of a case's follow-up plan: when it is due, when its owner is reminded, and how
-- far it went. Scheduled only where the consent includes follow_up; cancelled when the consent
-- stops including it or the case is closed or erased; done once assessed.
CREATE TABLE follow_ups (
    case_id          uuid        NOT NULL,
    wave             text        NOT NULL,
    owner_agency_id  text        NOT NULL,
    due_on           date        NOT NULL,
    remind_on        date        NOT NULL,
    status           text        NOT NULL DEFAULT 'scheduled' CHECK (status IN (
        'scheduled', 'reminded', 'due', 'done', 'missed', 'cancelled')),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, wave)
);
-- The periodic job's look-up: open rows by the earliest date that can move them.
CREATE INDEX follow_ups_open ON follow_ups (remind_on)
    WHERE status IN ('scheduled', 'reminded', 'due');

-- One assessment per case and wave (a resubmission replaces it): the answers (option codes of
-- the indicator set, no free text) and the scores intake computed from them.
CREATE TABLE assessments (
    case_id        uuid        NOT NULL,
    wave           text        NOT NULL,
    assessed_on    date        NOT NULL,
    indicator_set  text        NOT NULL,
    answers        jsonb       NOT NULL,
    scores         jsonb       NOT NULL,
    submission_id  text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, wave)
);

ALTER TABLE submissions DROP CONSTRAINT submissions_outcome_check;
ALTER TABLE submissions ADD CONSTRAINT submissions_outcome_check CHECK (outcome IN (
    'registered', 'updated', 'rejected', 'consent_withdrawn', 'erased', 'closed',
    'assistance_ended', 'erasure_confirmed', 'assessment_recorded'));
