-- A reminder to the recipient before its decision deadline.
ALTER TABLE timers ADD COLUMN remind_at timestamptz;
ALTER TABLE timers ADD COLUMN reminded boolean NOT NULL DEFAULT false;
CREATE INDEX timers_remind ON timers (remind_at) WHERE NOT reminded;
