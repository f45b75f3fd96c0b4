-- Plumbing every service database has: the transactional outbox and the idempotent-consumer inbox.

CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    text        NOT NULL UNIQUE,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    headers     jsonb       NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
-- The relay reads only unsent rows, in id order.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Wake the relay as soon as a transaction that wrote outbox rows commits.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
