-- Agencies known to notification (from directory.agencies.v1) and what was put in their inboxes.
CREATE TABLE agencies (
    agency_id    text PRIMARY KEY,
    inbox_topic  text  NOT NULL,
    record       jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    notification_id  text PRIMARY KEY,      -- the CloudEvents id of the inbox event
    agency_id        text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('kafka_inbox')),
    source_event_id  text NOT NULL,
    ce_type          text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agency_id, channel, source_event_id)
);
