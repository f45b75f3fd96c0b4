-- Pruning (decision 29) finds what is due by time, oldest first, through these indexes: never a
-- scan of the whole table. Built in the migration's transaction, which holds off writes to the
-- table while it runs (seconds for millions of rows; once).
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX inbox_processed_at ON inbox (processed_at);
