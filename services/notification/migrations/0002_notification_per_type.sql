-- One event may concern the same agency twice in different roles (an agency referring to its
-- own service hears both the status change and the cancellation): unique per type too.
ALTER TABLE notifications DROP CONSTRAINT notifications_agency_id_channel_source_event_id_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_once_per_type
    UNIQUE (agency_id, channel, source_event_id, ce_type);
