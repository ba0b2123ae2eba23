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


def parse_tx_result(doc: Any) -> Inclusion:
    """A `/tx` answer or an event's TxResult: code, codespace and index may be omitted when zero.
    Anything else (wrong types, a non-integer height) is a ValueError: the node's answer, not ours."""
    if not isinstance(doc, dict):
        raise ValueError("tx answer is not an object")
    result = doc.get("tx_result") or doc.get("result") or {}
    if not isinstance(result, dict):
        raise ValueError("tx result is not an object")
    try:
        code, height = int(result.get("code", 0)), int(doc.get("height", 0))
    except (TypeError, ValueError):
        raise ValueError("tx code or height is not an integer") from None
    return Inclusion(height, ChainAnswer(code, str(result.get("codespace", "")), str(result.get("log", ""))))


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
    if doc is None:
        return Lookup(unknown=True)
    try:
        return Lookup(found=parse_tx_result(doc))
    except ValueError as exc:
        return Lookup(error=f"malformed /tx answer: {exc}")


async def sequence_user(rpc: CometRpc, address: str, sequence: int) -> tuple[str, Inclusion] | None:
    """(hash, inclusion) of the tx whose ante checks used `address`'s `sequence`, or None if the node
    does not say (no such tx indexed, or the query failed)."""
    try:
        result = await rpc.call(
            "tx_search", query=f"tx.acc_seq='{address}/{sequence}'", prove=False, page=1, per_page=5, order_by="asc"
        )
    except ChainRpcError:
        return None
    txs = result.get("txs") if isinstance(result, dict) else None
    for doc in txs if isinstance(txs, list) else []:
        if isinstance(doc, dict) and isinstance(doc.get("hash"), str) and doc["hash"]:
            try:
                return doc["hash"].upper(), parse_tx_result(doc)
            except ValueError:
                return None  # the node's answer is unreadable: it does not say
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
        """A Tx event; one the watcher cannot read is ignored (the poll path still settles its tx)."""
        events, data = result.get("events"), result.get("data")
        hashes = events.get("tx.hash") if isinstance(events, dict) else None
        value = data.get("value") if isinstance(data, dict) else None
        tx_result = value.get("TxResult") if isinstance(value, dict) else None
        if not isinstance(hashes, list) or not hashes or not tx_result:
            return
        try:
            self._seen[str(hashes[0]).upper()] = parse_tx_result(tx_result)
        except ValueError:
            return
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
