"""An agent's attachment at Jira reaches the chain end to end: the real node, the Jira simulator and its signed
webhooks, and the sidecar as a real process with its local artifact store.

What landed is read back from the chain itself (the ticket's responses over abci_query, opened with the
customer's wallet key), and the object the response names is opened from the artifact directory with the
customer's key and checked against the payload's sha256 — what the customer's portal would do.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import query_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver
from devnet.envelope import open_envelope, payload_from_proto
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from sidecar.artifacts.local import LocalStore
from sidecar.artifacts.sealed import open_object
from sidecar.chain.envelope import EnvelopeKey
from tests.sidecar.sync.inbound_kit import CUSTOMER, SUPPORT_RESPONSES, Sidecar, create_ticket, linked_keys, rows

pytestmark = pytest.mark.node
MiB = 1024 * 1024


@pytest.fixture
def sidecars() -> Iterator[list[Sidecar]]:
    made: list[Sidecar] = []
    yield made
    for sidecar in made:
        sidecar.kill()


def chain_payloads(node: DevnetNode, ticket_id: str) -> list[dict[str, Any]]:
    """Every response of the ticket as the customer's wallet opens it (the whole plaintext)."""
    with ChainDriver(node.rpc_url, CUSTOMER) as driver:
        value = driver.abci_query(SUPPORT_RESPONSES, query_pb2.QuerySupportResponsesRequest(ticket_id=ticket_id))
    opened = []
    for response in query_pb2.QuerySupportResponsesResponse.FromString(value).responses:
        payload = payload_from_proto(response.payload)
        assert payload.envelope is not None
        opened.append(open_envelope(payload.envelope, CUSTOMER.box_key))
    return opened


async def test_an_agents_attachment_at_jira_reaches_the_chain_and_the_customer_opens_it(
    tmp_path: Path, devnet_node: DevnetNode, make_jira_sim: Callable[..., JiraSim], sidecars: list[Sidecar]
) -> None:
    jira = make_jira_sim(max_attachment_bytes=20 * MiB)
    sidecar = Sidecar(tmp_path, devnet_node, jira, None, {"artifacts.dir": str(tmp_path / "artifacts")})
    sidecars.append(sidecar)
    sidecar.start()
    tid = create_ticket(devnet_node, "attachment e2e")
    key = await async_wait_until(lambda: linked_keys(sidecar.db).get(tid), timeout=30, what="the Jira issue")
    content = b"%PDF-1.7\n" + os.urandom(MiB)
    digest = hashlib.sha256(content).hexdigest()
    jira.agent_attach(key, "answer.pdf", content, "application/pdf")  # its jira:issue_updated hook is the hint

    def landed() -> dict[str, Any] | None:
        with_files = [p for p in chain_payloads(devnet_node, tid) if p.get("attachments")]
        return with_files[0] if with_files else None

    try:
        payload = await async_wait_until(landed, timeout=30, what="the attachment's response on chain", interval=0.3)
    except AssertionError:
        raise AssertionError(sidecar.tail()) from None
    [entry] = payload["attachments"]
    assert (entry["file_name"], entry["content_type"], entry["size"], entry["sha256"]) == (
        "answer.pdf",
        "application/pdf",
        len(content),
        digest,
    )
    assert payload["message"] == f"{jira.agent.display_name} (Jira agent) attached answer.pdf" or payload[
        "message"
    ] == ("Jira agent attached answer.pdf")
    customer = EnvelopeKey.from_base64(base64.b64encode(bytes(CUSTOMER.box_key)).decode())
    store = LocalStore(tmp_path / "artifacts")
    plain = hashlib.sha256()
    async for piece in open_object(customer, store.open(entry["ref"]), 2 * MiB):
        plain.update(piece)
    assert plain.hexdigest() == digest, "the stored object does not open to the agent's file"
    assert len(chain_payloads(devnet_node, tid)) == 1, "the attachment was answered more than once"
    [(state, ref)] = rows(sidecar.db, "SELECT state, ref FROM attachments WHERE direction = 'inbound'")
    assert (state, ref) == ("done", entry["ref"])
    logs = "".join(sidecar.all_lines())
    assert "answer.pdf" not in logs, "a file name reached the sidecar's log"
    sidecar.stop()
