"""Our txs as blocks include them, pushed by one websocket subscription on the signer's account.

The query matches the ante handler's `tx.acc_seq` attribute ("<address>/<sequence>"), which the SDK
emits for every included tx of the account whose ante checks passed (a failed Msg too). The
subscription is the fast path; the settler polls `/tx` for whatever it did not report (not yet
subscribed, reconnected since the broadcast, or an event dropped because we read too slowly), and
asks `tx_search` by `tx.acc_seq` which tx used a sequence when it must prove that ours did not land.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sidecar.chain.outcomes import ChainAnswer
from sidecar.chain.rpc import CometRpc
from sidecar.chain.subscription import Subscription
from sidecar.errors import ChainRpcError
from sidecar.observe.metrics import Metrics

MAX_REMEMBERED = 10_000  # inclusions reported but not yet taken (txs of ours sent before a restart)


@dataclass(frozen=True)
class Inclusion:
    height: int
    answer: ChainAnswer


def parse_tx_result(doc: dict[str, Any]) -> Inclusion:
    """A `/tx` answer or an event's TxResult: code, codespace and index may be omitted when zero."""
    result = doc.get("tx_result") or doc.get("result") or {}
    answer = ChainAnswer(int(result.get("code", 0)), str(result.get("codespace", "")), str(result.get("log", "")))
    return Inclusion(int(doc.get("height", 0)), answer)


@dataclass(frozen=True)
class Lookup:
    """`/tx` by hash: the inclusion, or `unknown` only on the node's exact not-found answer, else `error`."""

    found: Inclusion | None = None
    unknown: bool = False
    error: str | None = None


async def look_up(rpc: CometRpc, tx_hash: str) -> Lookup:
    try:
        doc = await rpc.tx(tx_hash)
    except ChainRpcError as exc:
        return Lookup(error=str(exc))
    return Lookup(unknown=True) if doc is None else Lookup(found=parse_tx_result(doc))


async def sequence_user(rpc: CometRpc, address: str, sequence: int) -> tuple[str, Inclusion] | None:
    """(hash, inclusion) of the tx whose ante checks used `address`'s `sequence`, or None if the node
    does not say (no such tx indexed, or the query failed)."""
    try:
        result = await rpc.call(
            "tx_search", query=f"tx.acc_seq='{address}/{sequence}'", prove=False, page=1, per_page=5, order_by="asc"
        )
    except ChainRpcError:
        return None
    for doc in (result or {}).get("txs") or []:
        if doc.get("hash"):
            return str(doc["hash"]).upper(), parse_tx_result(doc)
    return None


class TxWatcher:
    def __init__(self, url: str, address: str, metrics: Metrics) -> None:
        query = f"tm.event='Tx' AND tx.acc_seq CONTAINS '{address}/'"
        self.subscription = Subscription(url, query, self._on_event, metrics, name="tx inclusion")
        self._seen: OrderedDict[str, Inclusion] = OrderedDict()

    def epoch(self) -> int | None:
        """The current subscription's epoch, or None while none is live."""
        return self.subscription.epoch if self.subscription.live.is_set() else None

    def watched_since(self, epoch: int | None) -> bool:
        """True when one subscription has been live from the moment `epoch` was taken until now."""
        return epoch is not None and epoch == self.epoch()

    def take(self, tx_hash: str) -> Inclusion | None:
        return self._seen.pop(tx_hash.upper(), None)

    def has(self, tx_hash: str) -> bool:
        return tx_hash.upper() in self._seen

    def _on_event(self, result: dict[str, Any]) -> None:
        hashes = (result.get("events") or {}).get("tx.hash") or []
        tx_result = ((result.get("data") or {}).get("value") or {}).get("TxResult") or {}
        if not hashes or not tx_result:
            return
        self._seen[str(hashes[0]).upper()] = parse_tx_result(tx_result)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
