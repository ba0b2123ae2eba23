"""Local stand-ins for the sidecar's peers: a real CometBFT node running the x/support
contract (chain_app), and stateful Jira and Waldur simulators. Shares no code with sidecar/."""
