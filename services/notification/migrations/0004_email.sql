-- E-mail channels and their durable outgoing queue (same retry schedule as webhooks).
CREATE TABLE email_channels (
    agency_id    text PRIMARY KEY,
    addresses    text[] NOT NULL,
    language     text NOT NULL CHECK (language IN ('en', 'fr')),
    event_types  text[],
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE email_deliveries (
    email_id         text PRIMARY KEY,
    agency_id        text NOT NULL,
    notification_id  text NOT NULL,
    addresses        text[] NOT NULL,
    subject          text NOT NULL,
    body_text        text NOT NULL,
    body_html        text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'exhausted')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX email_deliveries_due ON email_deliveries (next_attempt_at) WHERE status = 'pending';
