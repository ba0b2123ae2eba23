"""The HTTP server: webhook receivers, /webhooks/health and /metrics."""
