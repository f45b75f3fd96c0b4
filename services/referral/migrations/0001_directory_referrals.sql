-- Materialised directory (rebuilt from the compacted topics) and referrals.
CREATE TABLE agencies (
    agency_id   text PRIMARY KEY,
    type        text  NOT NULL,
    record      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE listings (
    service_id      text PRIMARY KEY,
    agency_id       text   NOT NULL,
    status          text   NOT NULL,
    categories      text[] NOT NULL,
    coverage_areas  text[] NOT NULL,
    languages       text[] NOT NULL,
    capacity        text   NOT NULL,
    listing         jsonb  NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX listings_categories ON listings USING gin (categories);

CREATE TABLE referrals (
    referral_id          uuid PRIMARY KEY,
    case_id              text NOT NULL,
    need_id              text NOT NULL,
    category             text NOT NULL,
    referring_agency_id  text NOT NULL,
    recipient_agency_id  text,
    service_id           text,
    status               text NOT NULL,
    explanation          jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    -- one referral chain per need: a redelivered case event cannot open a second one
    UNIQUE (case_id, need_id)
);
