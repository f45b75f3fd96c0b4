"""`make bench`: the whole pipeline against a raw Kafka baseline, and matching on its own."""
