"""Events as the app builds them (type + ordered string attributes), converted to ABCI once."""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmpy.protos.tendermint.abci import types_pb2 as abci


@dataclass
class Event:
    """One ABCI event; attribute order is part of the contract, so it is a list, not a dict."""

    type: str
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def with_attr(self, key: str, value: str) -> Event:
        return Event(self.type, [*self.attributes, (key, value)])


def to_abci(events: list[Event]) -> list[abci.Event]:
    """All attributes indexed, as the SDK does with its default index-events config."""
    return [
        abci.Event(type=ev.type, attributes=[abci.EventAttribute(key=k, value=v, index=True) for k, v in ev.attributes])
        for ev in events
    ]
