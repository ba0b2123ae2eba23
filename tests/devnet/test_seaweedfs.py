"""The devnet's S3 server starts only on ports it holds itself.

weed logs a port it cannot bind and keeps running without that listener; another weed holding the port (every
devnet weed has the same test keys) would then answer in its place: the likely way a fresh-clone CI run paused
its own weed and still read an object back (from a neighbour's, the other test worker's)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devnet.node_config import PortTaken
from devnet.seaweedfs import SeaweedS3


@contextmanager
def squatting(port: int) -> Iterator[None]:
    """Hold `port` with a listener that never answers (SO_REUSEADDR: the port may still be in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        yield


def test_a_first_start_whose_s3_port_was_taken_moves_to_free_ports(seaweedfs_bin: Path) -> None:
    server = SeaweedS3(binary=seaweedfs_bin)
    taken = server.ports["s3"]
    try:
        with squatting(taken):
            server.start()
            assert server.ports["s3"] != taken
            server.request("PUT", "/moved", ok=(200, 409))
            server.request("PUT", "/moved/object", b"on our own port")
    finally:
        server.cleanup()


def test_a_restart_whose_s3_port_another_weed_took_fails_instead_of_using_that_weed(seaweedfs_bin: Path) -> None:
    server, neighbour = SeaweedS3(binary=seaweedfs_bin), SeaweedS3(binary=seaweedfs_bin)
    try:
        server.start()
        port = server.ports["s3"]
        server.stop()
        neighbour.ports["s3"] = port
        neighbour.start()  # answers on the port, with the same keys
        with pytest.raises(PortTaken, match="address already in use"):
            server.start(timeout=30)
        assert not server.running() and server.ports["s3"] == port
    finally:
        server.cleanup()
        neighbour.cleanup()
