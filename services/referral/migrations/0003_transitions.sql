-- Every state change with its time: the evidence reports (time to acknowledge, to decide).
CREATE TABLE referral_transitions (
    id           bigserial PRIMARY KEY,
    referral_id  uuid NOT NULL REFERENCES referrals (referral_id),
    from_state   text NOT NULL,
    to_state     text NOT NULL,
    reason_code  text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_transitions_by_referral ON referral_transitions (referral_id, at);
