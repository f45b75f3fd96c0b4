-- Dashboard accounts (operators and viewers: government and programme managers) and the
-- failed logins that throttle an account name. Staff logins, not returnees: no case data here.
CREATE TABLE dashboard_accounts (
    account_id          text PRIMARY KEY,             -- a uuid: what logs and sessions name
    username            text NOT NULL UNIQUE,         -- lower case
    password_hash       text NOT NULL,                -- Argon2id, with its parameters
    role                text NOT NULL CHECK (role IN ('operator', 'viewer')),
    country             text CHECK (country ~ '^[A-Z]{2}$'),  -- a viewer's scope; NULL: all
    created_at          timestamptz NOT NULL DEFAULT now(),
    disabled_at         timestamptz,
    -- Sessions started before this are no longer valid (set when disabled or re-enabled).
    sessions_not_before timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz,
    CHECK (role = 'viewer' OR country IS NULL)
);

-- Keyed by the name typed, known or not (see services/evidence/web/throttle.py), as a SHA-256
-- digest: a password typed into the name field by mistake is not kept readable.
CREATE TABLE dashboard_login_failures (
    username_digest text PRIMARY KEY,
    failures        int NOT NULL CHECK (failures > 0),
    last_failed_at  timestamptz NOT NULL
);
CREATE INDEX dashboard_login_failures_age ON dashboard_login_failures (last_failed_at);
