"""The agency gateway (issue 20): CloudEvents over HTTP and a web console for agencies without
a Kafka developer. It holds no credential of its own: each request is authenticated as one of
the agency's Kafka principals and talks to Kafka as that principal, so the broker's ACLs and
the proof of sender (the topic) hold unchanged (docs/decisions/0027)."""
