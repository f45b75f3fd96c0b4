-- Continuity (decision 16): case handovers between agencies and their deadlines, ends of an
-- owner's assistance (for evidence), programmes that take cases over, deregistered agencies.

-- A tombstone on directory.agencies.v1 deregisters an agency: kept (its referrals and
-- statistics name it) but no longer a receiver of handovers or a next owner.
ALTER TABLE agencies ADD COLUMN deregistered_at timestamptz;

-- A registration again (the upsert of a record, which leaves deregistered_at alone) makes the
-- agency registered again; only the deregistration itself sets the column. Done here rather
-- than in the upsert, so every version of the service's upsert keeps its meaning.
CREATE FUNCTION registered_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deregistered_at IS NOT DISTINCT FROM OLD.deregistered_at THEN
        NEW.deregistered_at := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER agencies_registered_again BEFORE UPDATE ON agencies
    FOR EACH ROW WHEN (OLD.deregistered_at IS NOT NULL)
    EXECUTE FUNCTION registered_again();

-- An erased case is told apart from a closed one (a handover of it is refused with that reason).
ALTER TABLE cases DROP CONSTRAINT cases_status_check;
ALTER TABLE cases ADD CONSTRAINT cases_status_check
    CHECK (status IN ('open', 'closed', 'erased'));

-- The listing declares its programme takes cases over: derived on every write, as the columns of
-- migration 0006, whichever version of the service writes the listing.
ALTER TABLE listings ADD COLUMN takes_over_cases boolean
    GENERATED ALWAYS AS (coalesce((listing ->> 'takes_over_cases')::boolean, false)) STORED;
-- Next owners are looked up by area among the few listings that take cases over.
CREATE INDEX listings_taking_over ON listings USING gin (coverage_areas)
    WHERE takes_over_cases AND status = 'active';

-- One handover of a case from its owner to a receiving agency: an offer by the owner (the
-- receiver answers) or a request by the receiver (the owner answers).
CREATE TABLE handovers (
    handover_id          text PRIMARY KEY,
    case_id              text NOT NULL,
    direction            text NOT NULL CHECK (direction IN ('offer', 'request')),
    owner_agency_id      text NOT NULL,
    receiving_agency_id  text NOT NULL,
    answering_agency_id  text NOT NULL,
    reason               text NOT NULL,
    respond_by           timestamptz NOT NULL,
    state                text NOT NULL CHECK (state IN
        ('proposed', 'accepted', 'rejected', 'expired', 'completed', 'failed')),
    -- the new owner's reference: from the request, or from the answer accepting an offer
    receiving_case_ref   text,
    -- the consent record an offer carried (intake applies it first)
    consent              jsonb,
    decline_reason       text,
    message_id           text NOT NULL,  -- the ce_id of the proposal or request
    correlation_id       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- One handover waits per case at a time (also when two agencies' messages race on two
-- instances: the second insert fails, its batch is applied again and refused).
CREATE UNIQUE INDEX handovers_one_pending_per_case ON handovers (case_id)
    WHERE state IN ('proposed', 'accepted');
CREATE INDEX handovers_by_case ON handovers (case_id);

-- The answer's deadline as a row, taken by the periodic job like the referral deadlines.
CREATE TABLE handover_timers (
    handover_id  text PRIMARY KEY REFERENCES handovers (handover_id),
    due_at       timestamptz NOT NULL
);
CREATE INDEX handover_timers_due ON handover_timers (due_at);

-- Each end of an owner's assistance, and the referrals open with providers at that moment:
-- the evidence counts the needs whose support went on afterwards.
CREATE TABLE assistance_ends (
    id               bigserial PRIMARY KEY,
    case_id          text NOT NULL,
    owner_agency_id  text NOT NULL,
    reason           text NOT NULL,
    ended_at         timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assistance_ends_by_case ON assistance_ends (case_id);

CREATE TABLE assistance_end_referrals (
    assistance_end_id  bigint NOT NULL REFERENCES assistance_ends (id),
    referral_id        uuid   NOT NULL REFERENCES referrals (referral_id),
    PRIMARY KEY (assistance_end_id, referral_id)
);
