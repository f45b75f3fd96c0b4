-- Handover proposals and requests that named a case referral has not read yet: an agency that
-- hears submission-accepted may propose at once, while referral reads intake.cases.v1 apart from
-- the agency's responses topic. Each waits here for the case's case-registered (then is decided
-- as if it arrived then), or is refused with unknown_case after a while by the periodic job.
CREATE TABLE waiting_handovers (
    ce_id             text PRIMARY KEY,  -- the message's: a redelivery does not wait twice
    case_id           text NOT NULL,
    ce_type           text NOT NULL,
    sender_agency_id  text NOT NULL,
    correlation_id    text,
    payload           jsonb NOT NULL,    -- the validated message
    received_at       timestamptz NOT NULL DEFAULT clock_timestamp()  -- its order in a batch
);
CREATE INDEX waiting_handovers_by_case ON waiting_handovers (case_id, received_at);
CREATE INDEX waiting_handovers_by_age ON waiting_handovers (received_at);
