-- An endpoint failing for too long is disabled (settings: webhook_disable_after_days).
ALTER TABLE webhook_endpoints ADD COLUMN failing_since timestamptz;
