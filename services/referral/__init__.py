"""Referral service: materialised directory, matching, referral lifecycle. No personal data."""
