"""Hostile tickets on the real devnet chain, followed by the real sidecar process: it keeps running,
records each hostile event's reason (a placeholder for a payload it cannot open, poison for an event
it cannot decode), moves its cursor past their block, mirrors the normal ticket after them, and
starts again on the same database without failing on that block."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import tx_pb2

from devnet import envelope as devnet_envelope
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount, TxResult
from devnet.waiting import async_wait_until
from tests.sidecar.chain.node_proxy import NodeProxy
from tests.sidecar.chain.scan import scan_event_ids, support_public, support_secret
from tests.sidecar.chain.test_follower_node import db_cursor, db_rows, inbox_ids
from tests.sidecar.process import SidecarProcess

pytestmark = pytest.mark.node
SECRET_WORD = "Zanzibar-7731"  # in every hostile plaintext: it must surface in no reason and no log line
NORMAL = {"subject": "normal ticket", "description": "after the hostile ones"}


def sidecar(node_url: str, db: Path, tmp_path: Path, ws_url: str = "") -> SidecarProcess:
    env = {
        "VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY": support_secret(),
        "VIRTENGINE_SERVICEDESK_STORE_PATH": str(db),
        "VIRTENGINE_SERVICEDESK_CHAIN_START_HEIGHT": "1",
    }
    if ws_url:
        env["VIRTENGINE_SERVICEDESK_CHAIN_WS_URL"] = ws_url
    args = ["run", "--chain-rpc-url", node_url, "--chain-poll-interval", "200ms",
            "--webhook-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--observe-listen", ""]
    return SidecarProcess(args, env, cwd=tmp_path)


def created_ids(result: TxResult) -> list[str]:
    return [e["ticket_id"] for e in result.support_events() if e.get("event_type") == "support_request_created"]


def hostile_payloads(d: ChainDriver) -> dict[str, Any]:
    """Envelopes the devnet chain accepts (its checks pass) that no support key can use."""
    support = support_public()
    word = SECRET_WORD.encode()
    return {
        "1,200 nested [": d.seal_raw(b"[" * 1200 + word + b"]" * 1200, support),
        "1,200 unclosed [": d.seal_raw(b"[" * 1200 + word, support),
        "plaintext not UTF-8": d.seal_raw(b"\xff\xfe" + word, support),
        "sender_pub_key a low-order point": d.seal_raw(json.dumps({"subject": SECRET_WORD}).encode(), support,
                                                       sender_pub_key=bytes(32)),
        "wrapped_key too short": d.seal_raw(
            json.dumps({"subject": SECRET_WORD}).encode(), support,
            wrapped_keys=(devnet_envelope.WrappedKey(devnet_envelope.key_id(support), b"abc"),),
        ),
    }


def tickets(db: Path) -> dict[str, tuple[str, str | None]]:
    return {r[0]: (r[1], r[2]) for r in db_rows(db, "SELECT ticket_id, content_state, content_reason FROM tickets")}


async def _cursor_at_least(db: Path, height: int) -> bool:
    return await asyncio.to_thread(db_cursor, db) >= height


def assert_no_secret_in_logs(proc: SidecarProcess) -> None:
    assert SECRET_WORD not in proc.text()
    assert "Traceback" not in proc.text()


async def test_hostile_envelopes_on_chain_become_placeholders_and_the_sidecar_goes_on(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer")) as d:
        hostile = hostile_payloads(d)
        # Every hostile ticket and a normal one in ONE tx: the same block, the normal one last.
        msgs = [tx_pb2.MsgCreateSupportRequest(sender=d.address, category="technical", priority="normal", payload=p)
                for p in hostile.values()]
        msgs.append(d.create_msg("technical", "normal", NORMAL, [support_public()]))
        same_block = await asyncio.to_thread(d.must_send, msgs)
        later = await asyncio.to_thread(d.must_send, [d.create_msg("technical", "normal", NORMAL, [support_public()])])
    ids = created_ids(same_block)
    hostile_ids, normal_in_block, normal_later = ids[:-1], ids[-1], created_ids(later)[0]
    assert len(hostile_ids) == len(hostile) and later.height > same_block.height

    proc = sidecar(devnet_node.rpc_url, db, tmp_path)
    try:
        await asyncio.to_thread(proc.wait_for_log, "started")
        await async_wait_until(lambda: _cursor_at_least(db, later.height), timeout=60,
                               what="the cursor past the hostile block and the normal ticket")
        assert proc.proc.poll() is None, "the sidecar stopped"
        mirror = tickets(db)
        for name, ticket_id in zip(hostile, hostile_ids, strict=True):
            state, reason = mirror[ticket_id]
            assert state == "placeholder", name
            assert reason and SECRET_WORD not in reason, name
        assert "nests over 64 levels deep" in mirror[hostile_ids[0]][1]  # type: ignore[operator]
        assert mirror[hostile_ids[3]][1] == "sender_pub_key is not a usable X25519 public key"
        assert mirror[normal_in_block] == ("decrypted", None)
        assert mirror[normal_later] == ("decrypted", None)
        assert inbox_ids(db) == scan_event_ids(devnet_node.rpc_url, 1, db_cursor(db))
        assert_no_secret_in_logs(proc)
        assert proc.terminate() == 0
    finally:
        proc.close()

    # The same database again: the hostile block is behind the cursor and nothing fails on it.
    before = db_cursor(db)
    proc = sidecar(devnet_node.rpc_url, db, tmp_path)
    try:
        await asyncio.to_thread(proc.wait_for_log, "started")
        await async_wait_until(lambda: _cursor_at_least(db, before + 3), timeout=60, what="the cursor to move on")
        assert proc.proc.poll() is None
        assert_no_secret_in_logs(proc)
        assert proc.terminate() == 0
    finally:
        proc.close()


def _nested(_: dict[str, Any]) -> str:
    return "[" * 1200 + "]" * 1200


def _envelope_rewrite(**fields: Any) -> Any:
    def rewrite(payload: dict[str, Any]) -> str:
        env = payload["payload"]["envelope"]
        for name, value in fields.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return json.dumps(payload)

    return rewrite


def _field_rewrite(**fields: Any) -> Any:
    def rewrite(payload: dict[str, Any]) -> str:
        return json.dumps({**payload, **fields})

    return rewrite


REWRITES: dict[str, tuple[Any, str, str]] = {
    # name: (rewrite, inbox state, what the reason says)
    "payload_json of 1,200 nested [": (_nested, "poison", "nests over 64 levels deep"),
    "short sender_pub_key": (_envelope_rewrite(sender_pub_key="AQID"), "placeholder", "sender_pub_key is 3 bytes"),
    "sender_signature without sender_pub_key": (_envelope_rewrite(sender_pub_key=None), "placeholder",
                                                "no sender_pub_key"),
    "nonce not base64": (_envelope_rewrite(nonce="%%%"), "placeholder", "nonce is not base64"),
    "nonce a number": (_envelope_rewrite(nonce=7), "placeholder", "nonce is not a base64 string"),
    "envelope a list": (_field_rewrite(payload={"envelope": [SECRET_WORD]}), "placeholder",
                        "envelope is not a JSON object"),
    "payload_hash a list": (_field_rewrite(payload_hash=[SECRET_WORD]), "poison", "payload_hash must be str"),
    "timestamp a string": (_field_rewrite(timestamp="soon"), "poison", "timestamp is not an integer"),
}


async def test_events_a_less_strict_chain_would_carry_are_poison_or_placeholders(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    """Shapes the devnet chain refuses at CheckTx (a 3-byte sender key, a signature without a key) or
    never writes (a non-object payload, wrong field types) arrive through a proxy that rewrites the
    events of real blocks; every one is recorded, and the normal ticket after them is mirrored."""
    db = tmp_path / "sidecar.db"
    with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer")) as d:
        refused = await asyncio.to_thread(d.create_with_payload, d.seal_raw(b"{}", support_public(),
                                                                            sender_pub_key=b"\x01\x02\x03"))
        assert not refused.ok and "sender_pub_key 32 bytes" in refused.log  # why these need the proxy
        msgs = [d.create_msg("technical", "normal", {"subject": SECRET_WORD}, [support_public()]) for _ in REWRITES]
        msgs.append(d.create_msg("technical", "normal", NORMAL, [support_public()]))
        block = await asyncio.to_thread(d.must_send, msgs)
    events = [e for e in block.support_events() if e["event_type"] == "support_request_created"]
    rules = {e["event_id"]: rule for e, (rule, _, _) in zip(events, REWRITES.values(), strict=False)}
    normal = events[-1]

    async with NodeProxy(devnet_node.rpc_url, rules).running() as proxy:
        proc = sidecar(proxy.url, db, tmp_path, ws_url=devnet_node.ws_url)
        try:
            await asyncio.to_thread(proc.wait_for_log, "started")
            await async_wait_until(lambda: _cursor_at_least(db, block.height + 1), timeout=60,
                                   what="the cursor past the rewritten block")
            assert proc.proc.poll() is None, "the sidecar stopped"
            assert proxy.rewritten == set(rules)
            inbox = {r[0]: (r[1], r[2]) for r in db_rows(db, "SELECT event_id, state, error FROM chain_inbox")}
            mirror = tickets(db)
            for (name, (_, state, reason)), event in zip(REWRITES.items(), events, strict=False):
                if state == "placeholder":
                    assert inbox[event["event_id"]][0] != "poison", name
                    got = mirror[event["ticket_id"]]
                    assert got[0] == "placeholder" and reason in (got[1] or ""), (name, got)
                    assert SECRET_WORD not in (got[1] or "")
                else:
                    assert inbox[event["event_id"]][0] == state, name
                    assert reason in (inbox[event["event_id"]][1] or ""), (name, inbox[event["event_id"]])
                    assert SECRET_WORD not in (inbox[event["event_id"]][1] or "")
            assert inbox[normal["event_id"]][0] != "poison"
            assert mirror[normal["ticket_id"]] == ("decrypted", None)
            assert inbox_ids(db) == scan_event_ids(devnet_node.rpc_url, 1, db_cursor(db))
            assert_no_secret_in_logs(proc)
            assert proc.terminate() == 0
        finally:
            proc.close()
