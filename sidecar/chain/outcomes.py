"""What a chain answer means for the intents of a tx: the signer's decision table, kept apart to be tested alone.

Message-level failures (the log names "message index: i") consumed the sequence and only that
message is to blame; ante-level failures (no index) did not consume it and concern the whole tx.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_MSG_INDEX = re.compile(r"message index: (\d+)")
_EXPECTED = re.compile(r"expected (\d+), got (\d+)")
# sdk codes that no retry can fix: unauthorized, insufficient funds, insufficient fee, parse, bad address
# or pubkey, unknown address, memo too large, invalid request, invalid gas limit.
PERMANENT_SDK = frozenset({2, 4, 5, 7, 8, 9, 12, 13, 18, 41})
SEQUENCE_MISMATCH = 32
TIMEOUT_HEIGHT = 30
ALREADY_IN_MEMPOOL = 19
OUT_OF_GAS = 11


class Verdict(enum.Enum):
    LANDED = "landed"
    ISOLATE = "isolate"  # one message of a batch failed: retry it alone, requeue the rest
    DEAD = "dead"  # cannot succeed: dead-letter with the chain's log
    RETRY = "retry"  # transient: requeue everything (sequence, timeout, out of gas)


@dataclass(frozen=True)
class ChainAnswer:
    code: int
    codespace: str = ""
    log: str = ""

    @property
    def message_index(self) -> int | None:
        match = _MSG_INDEX.search(self.log)
        return int(match.group(1)) if match else None

    @property
    def consumed_sequence(self) -> bool:
        """True when the ante handler passed (the account sequence moved on) though a message failed."""
        return self.code == 0 or self.message_index is not None

    @property
    def summary(self) -> str:
        return f"code {self.code} ({self.codespace or 'sdk'}): {self.log}"


def expected_sequence(log: str) -> tuple[int, int] | None:
    """(expected, got) from "account sequence mismatch, expected N, got M"."""
    match = _EXPECTED.search(log)
    return (int(match.group(1)), int(match.group(2))) if match else None


def judge(answer: ChainAnswer, batch_size: int) -> Verdict:
    """The verdict for an included (or CheckTx-refused) tx of `batch_size` Msgs."""
    if answer.code == 0:
        return Verdict.LANDED
    if answer.message_index is not None:
        # A module refused one message: deterministic for that message given the state, so a lone
        # message is dead (unauthorized, invalid transition, not found, closed ticket...).
        return Verdict.ISOLATE if batch_size > 1 else Verdict.DEAD
    if answer.codespace in ("", "sdk") and answer.code in PERMANENT_SDK:
        return Verdict.DEAD
    return Verdict.RETRY
