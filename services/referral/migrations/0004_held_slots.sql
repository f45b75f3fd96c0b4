-- Slots held by accepted referrals in the local view of a provider's capacity; a listing update
-- from the provider resets it (the provider's own figures win).
ALTER TABLE listings ADD COLUMN held_slots int NOT NULL DEFAULT 0;
