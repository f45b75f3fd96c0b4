-- E-mail channels may be in Arabic too (shared/i18n's refex catalogue, decision 26).
ALTER TABLE email_channels DROP CONSTRAINT email_channels_language_check;
ALTER TABLE email_channels ADD CONSTRAINT email_channels_language_check
    CHECK (language IN ('en', 'fr', 'ar'));
