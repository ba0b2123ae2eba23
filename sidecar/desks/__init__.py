"""Jira and Waldur clients behind one Desk protocol, with field mapping tables."""
