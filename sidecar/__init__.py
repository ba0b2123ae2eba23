"""servicedesk-sidecar: keeps VirtEngine x/support tickets in sync with Jira and Waldur."""

__version__ = "0.1.0"
