-- Webhook signing secrets sealed at rest, one row per secret (services/notification/secret_store.py
-- is the only code that reads or writes them). Signing needs the plaintext, so they cannot be
-- hashed: `sealed` is a PyNaCl secret box under NOTIFICATION_SECRETS_KEY, and `key_id` names the
-- key that sealed it (first 8 hex digits of its SHA-256) so the key can be rotated
-- (`refex notification reencrypt-secrets`).
CREATE TABLE webhook_secrets (
    secret_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agency_id    text NOT NULL REFERENCES webhook_endpoints (agency_id) ON DELETE CASCADE,
    key_id       text NOT NULL CHECK (key_id ~ '^[0-9a-f]{8}$' OR key_id = 'plaintext'),
    sealed       bytea NOT NULL,      -- nonce + XSalsa20-Poly1305 ciphertext of "whsec_…"
    valid_until  timestamptz,         -- NULL: the current secret; else it signs too until then
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_secrets_agency ON webhook_secrets (agency_id);

-- Secrets registered before this migration were stored in clear. SQL cannot seal them: the key
-- must never reach the database. So the still-valid ones are carried over marked
-- key_id = 'plaintext', the clear column is dropped, and the service seals every 'plaintext' row
-- at start-up, right after the migrations and before it delivers anything
-- (secret_store.seal_carried_over: idempotent, at every start). There is no production data yet;
-- on a database that did hold clear secrets, rotate them all the same: old copies survive in
-- backups, WAL and dead tuples.
INSERT INTO webhook_secrets (agency_id, key_id, sealed, valid_until)
SELECT e.agency_id, 'plaintext', convert_to(s->>'secret', 'UTF8'),
       (s->>'valid_until')::timestamptz
  FROM webhook_endpoints e
 CROSS JOIN LATERAL jsonb_array_elements(e.secrets) AS s
 WHERE s->>'valid_until' IS NULL OR (s->>'valid_until')::timestamptz > now();

ALTER TABLE webhook_endpoints DROP COLUMN secrets;
