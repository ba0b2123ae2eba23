"""What a chain answer means for the intents of a tx: the signer's decision table, kept apart to be tested alone.

Message-level failures (the log names "message index: i", as the SDK's baseapp wraps a Msg's error:
"failed to execute message; message index: %d") consumed the sequence and only that message is to
blame; ante-level failures (no index) did not consume it and concern the whole tx. Only a failure
that can be pinned on one intent spends that intent's attempts.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_MSG_INDEX = re.compile(r"message index: (\d+)")
_EXPECTED = re.compile(r"expected (\d+), got (\d+)")
# sdk codes that no retry of the same Msg can fix: unauthorized, parse, bad address or pubkey, unknown
# address, memo too large, invalid request, invalid gas limit.
PERMANENT_SDK = frozenset({2, 4, 7, 8, 9, 12, 18, 41})
INSUFFICIENT_FUNDS = 5
INSUFFICIENT_FEE = 13
OUT_OF_GAS = 11
ALREADY_IN_MEMPOOL = 19
TIMEOUT_HEIGHT = 30
SEQUENCE_MISMATCH = 32
# The account, not the Msgs: signing pauses until the balance (or the fee) allows, nothing is dead-lettered.
PAUSING_SDK = frozenset({INSUFFICIENT_FUNDS, INSUFFICIENT_FEE})
# The tx's envelope, not the Msgs: a new signature fixes it.
RESIGN_SDK = frozenset({SEQUENCE_MISMATCH, TIMEOUT_HEIGHT})


class Verdict(enum.Enum):
    LANDED = "landed"
    ISOLATE = "isolate"  # one message of a batch failed: it is blamed and goes alone, the rest are requeued
    SPLIT = "split"  # a batch failed as a whole: every Msg goes alone, none is blamed yet
    PAUSE = "pause"  # the account cannot pay: requeue unblamed and pause signing
    RESIGN = "resign"  # sequence or timeout height: requeue unblamed, sign again
    RETRY = "retry"  # a lone Msg failed transiently: blamed, requeued while attempts remain
    DEAD = "dead"  # a lone Msg cannot succeed: dead-letter with the chain's log


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
    def is_sdk(self) -> bool:
        return self.codespace in ("", "sdk")

    @property
    def should_pause(self) -> bool:
        """Out of funds or below the node's fee: the account's problem, not the Msgs'."""
        return self.is_sdk and self.code in PAUSING_SDK and self.message_index is None

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
    if answer.should_pause:
        return Verdict.PAUSE
    if answer.is_sdk and answer.code in RESIGN_SDK:
        return Verdict.RESIGN
    if batch_size > 1:
        return Verdict.SPLIT  # no index names the culprit: each Msg answers for itself alone
    if answer.is_sdk and answer.code in PERMANENT_SDK:
        return Verdict.DEAD
    return Verdict.RETRY
