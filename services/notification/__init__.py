"""Notification service: tells each agency what concerns it (Kafka inbox; webhooks later)."""
