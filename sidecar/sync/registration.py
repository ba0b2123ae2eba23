"""Queue the on-chain registration of each new desk ref (MsgRegisterExternalTicket) for the signer.

Queued inside the transaction that records the ref, so a ref is never recorded without its
registration intent, and a crash cannot queue it twice (the dedupe key is per ticket and desk).
"""

from __future__ import annotations

import sqlite3

from virtengine.support.v1 import tx_pb2

from sidecar.chain.txbuild import encode_msg
from sidecar.store.intents import queue_intent_txn, register_intent_key
from sidecar.store.refs import RefRow
from sidecar.sync.outbound import RegisterRef


def register_refs_as(sender: str) -> RegisterRef:
    def queue(conn: sqlite3.Connection, ref: RefRow, now: float) -> None:
        msg = tx_pb2.MsgRegisterExternalTicket(
            sender=sender,
            resource_id=ref.ticket_id,
            resource_type="support_request",
            external_system=ref.desk,
            external_ticket_id=ref.external_id,
            external_url=ref.external_url or "",
        )
        msg_type, data = encode_msg(msg)
        queue_intent_txn(conn, register_intent_key(ref.ticket_id, ref.desk), msg_type, ref.ticket_id, data, now)

    return queue
