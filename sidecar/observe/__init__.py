"""What operators see: logs, metrics, health and audit."""
