"""The gRPC control API for operators and chain tooling (plus grpc.health.v1 and reflection)."""
