"""Event contracts: the topic catalogue, the CloudEvents envelope and the payload models."""
