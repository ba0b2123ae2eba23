"""Outbound and inbound engines, conflicts and the durable job queue."""
