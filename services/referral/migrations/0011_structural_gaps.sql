-- Structural gaps (decision 18): unmet needs of one category clustered in one district within
-- one fixed period, reported once to the government agencies covering the district, and the
-- commitments they answer with.

-- One report per district, category and period: the unique key makes "once per period" hold
-- with two instances (the second insert does nothing and announces nothing).
CREATE TABLE structural_gaps (
    report_id             uuid PRIMARY KEY,
    area                  text NOT NULL,  -- the district
    category              text NOT NULL,
    period_start          date NOT NULL,
    period_end            date NOT NULL,
    unmet_needs           int  NOT NULL,
    previous_unmet_needs  int  NOT NULL,
    trend                 text NOT NULL,
    reasons               jsonb NOT NULL,  -- [{"reason": ..., "count": ...}]
    reported_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (area, category, period_start)
);

-- Whom each report was addressed to (a commitment is accepted from these agencies only).
CREATE TABLE structural_gap_addressees (
    report_id  uuid NOT NULL REFERENCES structural_gaps (report_id),
    agency_id  text NOT NULL,
    PRIMARY KEY (report_id, agency_id)
);

-- The commitment of each addressed agency: its latest one (a later one replaces it).
CREATE TABLE structural_commitments (
    report_id     uuid NOT NULL,
    agency_id     text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('planned_listing', 'not_planned')),
    service_id    text,
    planned_by    date,
    reason        text,
    note          text,  -- never published: kept here for the operators' evidence only
    message_id    text NOT NULL,
    revisions     int  NOT NULL DEFAULT 1,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, agency_id),
    FOREIGN KEY (report_id, agency_id) REFERENCES structural_gap_addressees (report_id, agency_id)
);

-- Clusters are counted over the period's unmet needs.
CREATE INDEX unmet_needs_since ON unmet_needs (since);
