"""Intake service: validates agency submissions, keeps the case registry and its personal data."""
