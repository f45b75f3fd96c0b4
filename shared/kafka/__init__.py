"""Kafka plumbing: broker factory, topic administration, reliable consumption, publishing."""
