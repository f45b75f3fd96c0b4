-- Caseworker control (issue 18, decision 19): needs held for their referrer's choice, and the
-- services and agencies a referrer excluded for a need (honoured by every later routing).
CREATE TABLE held_needs (
    case_id    text NOT NULL,
    need_id    text NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, need_id)
);

CREATE TABLE need_exclusions (
    case_id      text NOT NULL,
    need_id      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('service', 'agency')),
    excluded_id  text NOT NULL,
    excluded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, need_id, kind, excluded_id)
);

-- Who cancelled: 'requester' when the referring agency revoked or redirected the referral.
ALTER TABLE referral_transitions ADD COLUMN cancelled_by text;
