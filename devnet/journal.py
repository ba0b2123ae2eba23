"""An undo log for the msgs of one DeliverTx: cheap rollback without copying the whole state.

The msgs of a tx either all apply or none do (the ante handler's effects stay). DeliverTx runs them
in place on its block branch through `journaled()` tables, which save a deep copy of each entry the
first time a msg touches it; a failing msg restores those entries. Msg handlers address entries by
key; scanning a whole table is refused, so no handler can change what the log did not save.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

JOURNALED_TABLES = ("tickets", "responses", "refs", "counters")
_MISSING = object()


class Journal:
    def __init__(self) -> None:
        self._saved: dict[tuple[int, Any], tuple[dict[Any, Any], Any, Any]] = {}

    def touch(self, data: dict[Any, Any], key: Any) -> None:
        slot = (id(data), key)
        if slot not in self._saved:
            self._saved[slot] = (data, key, copy.deepcopy(data[key]) if key in data else _MISSING)

    def undo(self) -> None:
        for data, key, value in reversed(list(self._saved.values())):
            if value is _MISSING:
                data.pop(key, None)
            else:
                data[key] = value
        self._saved.clear()


class JournaledTable:
    """A table of the state seen through the journal: every keyed access saves the entry first."""

    def __init__(self, data: dict[Any, Any], journal: Journal) -> None:
        self._data = data
        self._journal = journal

    def __contains__(self, key: Any) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any, default: Any = None) -> Any:
        self._journal.touch(self._data, key)
        return self._data.get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self._journal.touch(self._data, key)
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._journal.touch(self._data, key)
        self._data[key] = value

    def __delitem__(self, key: Any) -> None:
        self._journal.touch(self._data, key)
        del self._data[key]

    def setdefault(self, key: Any, default: Any) -> Any:
        self._journal.touch(self._data, key)
        return self._data.setdefault(key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        self._journal.touch(self._data, key)
        return self._data.pop(key, *default)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("msg handlers address state entries by key; a whole-table scan cannot be rolled back")

    def values(self) -> Any:
        raise TypeError("msg handlers address state entries by key; a whole-table scan cannot be rolled back")

    def items(self) -> Any:
        raise TypeError("msg handlers address state entries by key; a whole-table scan cannot be rolled back")


def journaled(state: dict[str, Any], journal: Journal) -> dict[str, Any]:
    """The state as msg handlers see it in DeliverTx: the mutable tables behind the journal."""
    return {**state, **{name: JournaledTable(state[name], journal) for name in JOURNALED_TABLES}}
