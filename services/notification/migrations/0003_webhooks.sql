-- Webhook channels (secrets never leave this database) and their durable delivery schedule.
CREATE TABLE webhook_endpoints (
    agency_id        text PRIMARY KEY,
    url              text NOT NULL,
    secrets          jsonb NOT NULL,      -- [{"secret": "whsec_…", "valid_until": null | ts}]
    event_types      text[],              -- NULL: every type
    disabled_at      timestamptz,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    webhook_id       text PRIMARY KEY,    -- the same for every attempt: receivers de-duplicate
    agency_id        text NOT NULL,
    notification_id  text NOT NULL,       -- the inbox event's ce_id
    ce_type          text NOT NULL,
    payload          bytea NOT NULL,      -- the event as structured CloudEvents JSON
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'exhausted', 'endpoint_disabled')),
    attempts         int  NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_http_status int,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
