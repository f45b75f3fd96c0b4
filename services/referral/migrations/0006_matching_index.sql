-- Matching one need must not grow with the directory or with the referral history: it reads
-- only the listings of the need's category that cover the return area (through one GIN
-- index), and what it needs of each provider agency from one row kept up to date as the
-- agency and its referrals change, instead of aggregating all the agency's referrals per
-- candidate and per query.

-- One GIN index over both columns answers `categories @> [category] AND coverage_areas &&
-- prefixes` in a single scan (the lookup passes every prefix of the return area: P-codes
-- extend their parent's, so the listings found are exactly those whose coverage contains the
-- area); it replaces the index on categories alone. Without GIN's pending list (fastupdate):
-- listings change seldom and are read at every match, and every read would scan the pending
-- list in full until a vacuum merged it.
CREATE INDEX listings_matching ON listings USING gin (categories, coverage_areas)
    WITH (fastupdate = off);
DROP INDEX listings_categories;

-- What matching reads of the listing document, as columns PostgreSQL derives on every write
-- (whichever version of the service writes it): a lookup then neither ships nor parses whole
-- listings.
ALTER TABLE listings
    ADD COLUMN eligibility text
        GENERATED ALWAYS AS ((listing -> 'eligibility')::text) STORED,
    ADD COLUMN open_slots int
        GENERATED ALWAYS AS ((listing -> 'capacity' ->> 'open_slots')::int) STORED,
    ADD COLUMN acceptance_sla_hours int
        GENERATED ALWAYS AS ((listing ->> 'acceptance_sla_hours')::int) STORED;

-- Nothing may change agencies, referrals or transitions between the back-fill below and the
-- triggers that keep the rows up to date from then on (another instance may still run the
-- previous version).
LOCK TABLE agencies, referrals, referral_transitions IN SHARE ROW EXCLUSIVE MODE;

-- Per agency, what matching reads of it: its type (agencies.type; none without a record) and
-- its record of answering (docs/referral.md, "answer rate" and "speed"). `rated`: its
-- referrals in a state that says whether it answered, i.e. any but requested, cancelled and
-- entered_in_error; `answered`: those of them not expired; the answer rate is answered / rated
-- (none when rated = 0), worked out once per change rather than once per read.
CREATE TABLE matching_agencies (
    agency_id               text PRIMARY KEY,
    agency_type             text,
    rated                   bigint NOT NULL DEFAULT 0,
    answered                bigint NOT NULL DEFAULT 0,
    -- the numeric division avg() made, rounded to float8 as Python's float() rounds a Decimal
    answer_rate             double precision
        GENERATED ALWAYS AS ((answered::numeric / nullif(rated, 0))::float8) STORED,
    -- median of agency_decision_times.hours (percentile_cont(0.5)); none without a decision
    median_hours_to_decide  double precision
);

-- One row per decision (a transition to accepted or rejected): the hours from the referral's
-- creation to it, attributed to the referral's recipient. A referral's recipient and creation
-- time never change (re-routing creates a new referral) and transitions are only appended.
CREATE TABLE agency_decision_times (
    transition_id  bigint PRIMARY KEY,
    agency_id      text NOT NULL,
    hours          double precision NOT NULL
);
CREATE INDEX agency_decision_times_by_agency ON agency_decision_times (agency_id, hours);

-- Back-fill from what is there, with the very expressions matching used to compute on each
-- query (the same numeric division as avg(), the same float8 hours as percentile_cont).
INSERT INTO agency_decision_times (transition_id, agency_id, hours)
SELECT t.id, r.recipient_agency_id, extract(epoch FROM t.at - r.created_at) / 3600
  FROM referral_transitions t JOIN referrals r USING (referral_id)
 WHERE t.to_state IN ('accepted', 'rejected') AND r.recipient_agency_id IS NOT NULL;

INSERT INTO matching_agencies (agency_id, agency_type, rated, answered, median_hours_to_decide)
SELECT agency_id, a.type, coalesce(c.rated, 0), coalesce(c.answered, 0), d.median
  FROM (SELECT agency_id, type FROM agencies) a
  FULL JOIN (SELECT recipient_agency_id AS agency_id, count(*) AS rated,
                    count(*) FILTER (WHERE status <> 'expired') AS answered
               FROM referrals
              WHERE recipient_agency_id IS NOT NULL
                AND status NOT IN ('requested', 'cancelled', 'entered_in_error')
              GROUP BY recipient_agency_id) c USING (agency_id)
  FULL JOIN (SELECT agency_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY hours) AS median
               FROM agency_decision_times
              GROUP BY agency_id) d USING (agency_id);

-- Kept up to date by triggers, in the transaction that changes an agency or a referral,
-- whoever writes it (the service's handlers and deadline worker, the operator's
-- entered-in-error command).

CREATE FUNCTION copy_agency_type() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE matching_agencies SET agency_type = NULL WHERE agency_id = OLD.agency_id;
    ELSE
        INSERT INTO matching_agencies (agency_id, agency_type)
        VALUES (NEW.agency_id, NEW.type)
        ON CONFLICT (agency_id) DO UPDATE SET agency_type = EXCLUDED.agency_type;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER agencies_matching_type AFTER INSERT OR DELETE ON agencies
    FOR EACH ROW EXECUTE FUNCTION copy_agency_type();
CREATE TRIGGER agencies_matching_type_on_change AFTER UPDATE ON agencies
    FOR EACH ROW WHEN (OLD.type IS DISTINCT FROM NEW.type)
    EXECUTE FUNCTION copy_agency_type();

-- Adds to an agency's counts (the row is locked until commit, as for held_slots).
CREATE FUNCTION add_answer_counts(agency text, d_rated int, d_answered int) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO matching_agencies AS m (agency_id, rated, answered)
    VALUES (agency, d_rated, d_answered)
    ON CONFLICT (agency_id) DO UPDATE
       SET rated = m.rated + EXCLUDED.rated, answered = m.answered + EXCLUDED.answered;
$$;

CREATE FUNCTION count_answers() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_rated int := 0;
    old_answered int := 0;
    new_rated int := 0;
    new_answered int := 0;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.recipient_agency_id IS NOT NULL
       AND OLD.status NOT IN ('requested', 'cancelled', 'entered_in_error') THEN
        old_rated := 1;
        old_answered := (OLD.status <> 'expired')::int;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.recipient_agency_id IS NOT NULL
       AND NEW.status NOT IN ('requested', 'cancelled', 'entered_in_error') THEN
        new_rated := 1;
        new_answered := (NEW.status <> 'expired')::int;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.recipient_agency_id IS NOT DISTINCT FROM NEW.recipient_agency_id
    THEN
        -- Most transitions (received -> accepted -> in_progress -> completed) change neither
        -- count: the agency's row is then not even locked.
        IF (old_rated, old_answered) <> (new_rated, new_answered) THEN
            PERFORM add_answer_counts(
                NEW.recipient_agency_id, new_rated - old_rated, new_answered - old_answered);
        END IF;
        RETURN NULL;
    END IF;
    IF old_rated = 1 THEN
        PERFORM add_answer_counts(OLD.recipient_agency_id, -1, -old_answered);
    END IF;
    IF new_rated = 1 THEN
        PERFORM add_answer_counts(NEW.recipient_agency_id, 1, new_answered);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER referrals_count_answers AFTER INSERT OR DELETE ON referrals
    FOR EACH ROW EXECUTE FUNCTION count_answers();
CREATE TRIGGER referrals_count_answers_on_change AFTER UPDATE ON referrals
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.recipient_agency_id IS DISTINCT FROM NEW.recipient_agency_id)
    EXECUTE FUNCTION count_answers();

CREATE FUNCTION record_decision_time() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    agency text;
    created timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT r.recipient_agency_id, r.created_at INTO agency, created
          FROM referrals r WHERE r.referral_id = NEW.referral_id;
    ELSE
        DELETE FROM agency_decision_times WHERE transition_id = OLD.id
        RETURNING agency_id INTO agency;
    END IF;
    IF agency IS NULL THEN
        RETURN NULL;
    END IF;
    -- Lock the agency's row first: a concurrent decision of the same agency then commits
    -- before the median below is computed, and the median (a new statement, so a new
    -- snapshot) includes it instead of overwriting the agency's median with one that misses it.
    INSERT INTO matching_agencies (agency_id) VALUES (agency) ON CONFLICT DO NOTHING;
    PERFORM FROM matching_agencies WHERE agency_id = agency FOR UPDATE;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO agency_decision_times (transition_id, agency_id, hours)
        VALUES (NEW.id, agency, extract(epoch FROM NEW.at - created) / 3600);
    END IF;
    UPDATE matching_agencies
       SET median_hours_to_decide = (
               SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY hours)
                 FROM agency_decision_times WHERE agency_id = agency)
     WHERE agency_id = agency;
    RETURN NULL;
END $$;

CREATE TRIGGER referral_transitions_decision_time AFTER INSERT ON referral_transitions
    FOR EACH ROW WHEN (NEW.to_state IN ('accepted', 'rejected'))
    EXECUTE FUNCTION record_decision_time();
CREATE TRIGGER referral_transitions_decision_time_removed AFTER DELETE ON referral_transitions
    FOR EACH ROW WHEN (OLD.to_state IN ('accepted', 'rejected'))
    EXECUTE FUNCTION record_decision_time();
