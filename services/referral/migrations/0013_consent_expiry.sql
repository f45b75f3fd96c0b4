-- Issue 18, consent that follows through (decision 20): a consent's expires_on acts on that
-- date. One row per case whose consent has an expiry: due at the first moment the consent no
-- longer covers (the day after expires_on, 00:00 UTC); a new consent moves or drops it. Taken
-- by the periodic job consent-expiry (FOR UPDATE SKIP LOCKED), like the referral deadlines.
CREATE TABLE consent_expiries (
    case_id  text PRIMARY KEY,
    due_at   timestamptz NOT NULL
);
CREATE INDEX consent_expiries_due ON consent_expiries (due_at);
