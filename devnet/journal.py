"""An undo log for the msgs of one DeliverTx or Simulate: rollback without copying the whole state.

The msgs of a tx either all apply or none do (the ante handler's effects stay). DeliverTx runs them
in place on the committed tables through `journaled()` views, which save a deep copy of each entry the
first time a msg touches it; a failing msg restores those entries, and Simulate restores them always.
Msg handlers address entries by key; scanning a whole table is refused, so no handler can change what
the log did not save (nor what the block's change record does not write).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

JOURNALED_TABLES = ("tickets", "responses", "refs", "counters")
_MISSING = object()
_RESTORED = object()  # an entry an undo put back: still touched, nothing left to restore


class Journal:
    """Saved entries of one tx (or one Simulate), the keys it touched and the key-order changes it made.

    The touched keys and the order changes outlive an undo: the block's change record (devnet/state_log.py)
    writes each touched entry's final value, and replays insertions and deletions in the order they
    happened, so a restarted node's tables iterate in the order the live one's did."""

    def __init__(self) -> None:
        self._saved: dict[tuple[str, Any], tuple[dict[Any, Any], Any]] = {}
        self.ops: list[tuple[str, str, Any]] = []  # ("ins" | "del", table, key): a key added or removed

    @property
    def touched(self) -> list[tuple[str, Any]]:
        """(table, key) of every entry touched, first touch first."""
        return list(self._saved)

    def touch(self, table: str, data: dict[Any, Any], key: Any) -> None:
        slot = (table, key)
        if slot not in self._saved:
            self._saved[slot] = (data, copy.deepcopy(data[key]) if key in data else _MISSING)

    def adding(self, table: str, data: dict[Any, Any], key: Any) -> None:
        """Called before a write that may add `key` to the table."""
        self.touch(table, data, key)
        if key not in data:
            self.ops.append(("ins", table, key))

    def removing(self, table: str, data: dict[Any, Any], key: Any) -> None:
        """Called before a write that may remove `key` from the table."""
        self.touch(table, data, key)
        if key in data:
            self.ops.append(("del", table, key))

    def undo(self) -> None:
        for (table, key), (data, value) in reversed(list(self._saved.items())):
            if value is _RESTORED:
                continue
            if value is _MISSING:
                if key in data:
                    self.ops.append(("del", table, key))
                    del data[key]
            else:
                if key not in data:
                    self.ops.append(("ins", table, key))
                data[key] = value
        self._saved = {slot: (data, _RESTORED) for slot, (data, _) in self._saved.items()}


class JournaledTable:
    """A table of the state seen through the journal: every keyed access saves the entry first."""

    def __init__(self, data: dict[Any, Any], journal: Journal, name: str) -> None:
        self._data = data
        self._journal = journal
        self._name = name

    def __contains__(self, key: Any) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any, default: Any = None) -> Any:
        self._journal.touch(self._name, self._data, key)
        return self._data.get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self._journal.touch(self._name, self._data, key)
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._journal.adding(self._name, self._data, key)
        self._data[key] = value

    def __delitem__(self, key: Any) -> None:
        self._journal.removing(self._name, self._data, key)
        del self._data[key]

    def setdefault(self, key: Any, default: Any) -> Any:
        self._journal.adding(self._name, self._data, key)
        return self._data.setdefault(key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        self._journal.removing(self._name, self._data, key)
        return self._data.pop(key, *default)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("msg handlers address state entries by key; a whole-table scan cannot be rolled back")

    def values(self) -> Any:
        raise TypeError("msg handlers address state entries by key; a whole-table scan cannot be rolled back")

    def items(self) -> Any:
        raise TypeError("msg handlers address state entries by key; a whole-table scan cannot be rolled back")


def journaled(state: dict[str, Any], journal: Journal) -> dict[str, Any]:
    """The state as msg handlers see it in DeliverTx: the mutable tables behind the journal."""
    return {**state, **{name: JournaledTable(state[name], journal, name) for name in JOURNALED_TABLES}}
