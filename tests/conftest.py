"""Shared fixtures: the devnet node and desk simulators come from devnet's pytest plugins."""

pytest_plugins = ["devnet.fixtures", "devnet.sim_fixtures", "devnet.s3_fixtures"]
