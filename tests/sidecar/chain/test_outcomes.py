"""The signer's decision table: which failures are pinned on an intent, which pause, which only re-sign."""

from __future__ import annotations

import pytest

from sidecar.chain.outcomes import ChainAnswer, Verdict, judge

INDEXED = "failed to execute message; message index: 3: external ref exists: invalid request"


@pytest.mark.parametrize(
    ("answer", "batch", "verdict"),
    [
        (ChainAnswer(0), 5, Verdict.LANDED),
        (ChainAnswer(18, "support", INDEXED), 5, Verdict.ISOLATE),
        (ChainAnswer(18, "support", INDEXED), 1, Verdict.DEAD),
        # The account cannot pay: nobody's Msg is at fault, whatever the batch size.
        (ChainAnswer(5, "sdk", "spendable balance 0uve is smaller than 7500uve: insufficient funds"), 5, Verdict.PAUSE),
        (ChainAnswer(5, "sdk", "spendable balance 0uve is smaller than 7500uve: insufficient funds"), 1, Verdict.PAUSE),
        (ChainAnswer(13, "sdk", "insufficient fees; got: 1uve required: 7500uve: insufficient fee"), 1, Verdict.PAUSE),
        # A bank Msg failing for funds names its index: that Msg is at fault, not the account's fees.
        (ChainAnswer(5, "sdk", "failed to execute message; message index: 0: spendable balance 0uve"), 1, Verdict.DEAD),
        (ChainAnswer(32, "sdk", "account sequence mismatch, expected 7, got 6: incorrect account sequence"), 1,
         Verdict.RESIGN),
        (ChainAnswer(30, "sdk", "block height: 90, timeout height: 80: tx timeout height"), 5, Verdict.RESIGN),
        # No index names the culprit: every Msg goes alone, none blamed yet.
        (ChainAnswer(11, "sdk", "out of gas in location: txSize; gasWanted: 1, gasUsed: 2: out of gas"), 5,
         Verdict.SPLIT),
        (ChainAnswer(2, "sdk", "unable to resolve type URL /x.Y: tx parse error"), 5, Verdict.SPLIT),
        (ChainAnswer(2, "sdk", "unable to resolve type URL /x.Y: tx parse error"), 1, Verdict.DEAD),
        (ChainAnswer(11, "sdk", "out of gas"), 1, Verdict.RETRY),
        (ChainAnswer(7, "wasm", "a module's own code 7"), 1, Verdict.RETRY),
    ],
)
def test_judge(answer: ChainAnswer, batch: int, verdict: Verdict) -> None:
    assert judge(answer, batch) is verdict
