-- Issue 22, personal data off the broker (decision 32).

-- What intake last published on intake.keys.v1 about each of its submission keys (public keys
-- only: the private ones are settings). At every start intake publishes what its settings
-- changed: a new current key, a key now previous, a key taken out of the settings as retired.
CREATE TABLE submission_keys (
    key_sha256    text        PRIMARY KEY,
    public_key    text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('current', 'previous', 'retired')),
    published_at  timestamptz NOT NULL DEFAULT now()
);
