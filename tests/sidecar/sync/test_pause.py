"""An operator's inbound pause: the sweep leaves the desk alone and the engine claims none of its re-reads,
while a hint still queues one; once resumed, the sweep runs at once and the change reaches the chain.

Real store, the real Jira client and simulator on loopback, the wall clock (as test_inbound_sweep.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from devnet.jira_sim import JiraSim
from sidecar.desks.jira import JiraDesk
from sidecar.observe.metrics import Metrics
from sidecar.store.inbound import enqueue_issue_txn, sweep_mark
from sidecar.store.pauses import Pause, PauseBook
from sidecar.sync.sweep import PAUSE_RECHECK, Sweeper
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.sync.rig import Rig
from tests.sidecar.sync.test_inbound_engine import STATUS, msgs, run
from tests.sidecar.sync.test_inbound_sweep import open_rig


async def test_a_paused_desk_is_neither_swept_nor_reread_until_resumed(
    make_jira_sim: Callable[..., JiraSim], rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim()
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    book = PauseBook([Pause("inbound", "jira", time.time(), "operator", "test")])
    rig, engine = await open_rig(tmp_path, rigs, desk, pauses=book)  # outbound is not paused: the issue is created
    sweeper = Sweeper([desk], rig.store, interval=300.0, pauses=book)
    [(key,)] = await rig.query("SELECT external_key FROM external_refs")
    sim.agent_transition(str(key), "In Progress")
    sim.flush_index()

    assert await sweeper.step() == PAUSE_RECHECK  # looks again soon, so a resume is not held for 300 s
    assert await rig.store.read("mark", sweep_mark, "jira") is None  # not swept: the mark did not move
    assert await rig.query("SELECT * FROM inbound_queue") == []
    await rig.store.write("hint", enqueue_issue_txn, "jira", str(key), "webhook", time.time())  # intake goes on
    await run(engine)
    assert await rig.query("SELECT reason, state, attempts FROM inbound_queue") == [("webhook", "pending", 0)]
    assert await msgs(rig) == []

    book.replace([])  # Resume
    assert await sweeper.step() == 300.0
    assert await rig.store.read("mark", sweep_mark, "jira") is not None
    await run(engine)
    assert [STATUS[m.status] for _, m in await msgs(rig)] == ["in_progress"]  # type: ignore[attr-defined]
    assert await rig.query("SELECT * FROM inbound_queue") == []
