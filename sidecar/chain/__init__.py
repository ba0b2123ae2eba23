"""Everything that talks to the node: RPC client, follower, event decoding, envelopes, signer."""
