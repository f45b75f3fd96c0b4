-- Closed-loop lifecycle: referral chains per need (attempts, re-routing), deadlines as rows,
-- unmet needs, and the pseudonymous case snapshot needed to re-route.

ALTER TABLE referrals DROP CONSTRAINT referrals_case_id_need_id_key;
DELETE FROM referrals WHERE status = 'unmatched';  -- now kept in unmet_needs
ALTER TABLE referrals
    ADD COLUMN attempt int NOT NULL DEFAULT 1,
    ADD COLUMN previous_referral_id uuid REFERENCES referrals (referral_id),
    ADD COLUMN urgency text NOT NULL DEFAULT 'normal',
    ADD COLUMN respond_by timestamptz,
    ADD COLUMN reason_code text,
    ADD COLUMN outcome text,
    ADD COLUMN correlation_id text,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
-- One need never has two open referrals.
CREATE UNIQUE INDEX referrals_one_open_per_need ON referrals (case_id, need_id)
    WHERE status IN ('requested', 'received', 'accepted', 'in_progress', 'on_hold');
CREATE INDEX referrals_by_recipient ON referrals (recipient_agency_id, status);

CREATE TABLE cases (
    case_id               text PRIMARY KEY,
    submitting_agency_id  text  NOT NULL,
    profile               jsonb NOT NULL,
    needs                 jsonb NOT NULL,
    consent               jsonb NOT NULL,
    status                text  NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE unmet_needs (
    case_id     text NOT NULL,
    need_id     text NOT NULL,
    category    text NOT NULL,
    area        text NOT NULL,
    reason      text NOT NULL,
    attempts    int  NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, need_id)
);
CREATE INDEX unmet_needs_by_category ON unmet_needs (category);

-- Decision deadlines: a restart loses none; the expiry worker takes due rows.
CREATE TABLE timers (
    referral_id  uuid PRIMARY KEY REFERENCES referrals (referral_id),
    due_at       timestamptz NOT NULL
);
CREATE INDEX timers_due ON timers (due_at);
