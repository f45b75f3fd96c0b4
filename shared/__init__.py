"""Code shared by the Referral Exchange services: event contracts and Kafka/PostgreSQL plumbing.

Nothing in here may import a service package (an import-linter contract guards it).
"""
