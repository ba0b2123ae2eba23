"""A desk simulator served from a process of its own, driven from the bench's through a pipe.

A long run's simulators are busy (the soak's answer thousands of requests a minute and send the webhooks);
in the driver's process they shared one interpreter lock with the driver and the sampler, and what the
sidecar then measured was partly the rig's contention, not the desk's 100 ms. `RemoteSim` holds the facts the
sidecar's configuration needs (addresses, credentials, the organization), forwards the attributes a test sets
on a simulator (the webhook address and secrets), and makes the agent's edits and the request tallies calls.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim

SIMULATORS: dict[str, type[JiraSim] | type[WaldurSim]] = {"jira": JiraSim, "waldur": WaldurSim}
FORWARDED = frozenset({"webhook_url", "webhook_secret", "hook_secret"})  # set by the test kit, read when sending
STARTUP_TIMEOUT = 60.0  # seconds: a spawned interpreter imports the simulator before it answers


def serve(conn: Connection, desk: str, options: dict[str, Any]) -> None:
    """The simulator's process: start it, send its facts, then answer calls until told to stop (or the
    parent is gone). A call that raises answers with the exception, so the caller sees what the desk refused."""
    sim = SIMULATORS[desk](**options).start()
    try:
        conn.send(facts(sim))
        while True:
            try:
                call, args, kwargs = conn.recv()
            except EOFError:
                return
            if call == "stop":
                return
            try:
                answer: tuple[str, Any] = ("ok", CALLS[call](sim, *args, **kwargs))
            except Exception as exc:  # the desk's refusal, sent back to be raised where the call was made
                answer = ("error", exc)
            try:
                conn.send(answer)
            except Exception as exc:  # an exception that does not pickle is sent by name and message
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        sim.stop()


def facts(sim: JiraSim | WaldurSim) -> dict[str, Any]:
    """What the sidecar's configuration and the probes read from a simulator."""
    if isinstance(sim, JiraSim):
        return {"base_url": sim.base_url, "email": sim.email, "api_token": sim.api_token, "me": sim.me}
    return {"api_url": sim.api_url, "token": sim.token, "customers": dict(sim.customers), "me": sim.me}


def tally(sim: JiraSim | WaldurSim) -> tuple[Counter[str], int]:
    """The requests answered since the last tally, by "<endpoint> <outcome>", and their number; the request
    log and the webhook attempts are emptied (an hour of both is memory the run never reads)."""
    with sim.lock:
        records, sim.requests[:] = list(sim.requests), []
    sim.webhooks.forget_attempts()
    return Counter(f"{r.endpoint} {r.outcome}" for r in records), len(records)


def answered(sim: JiraSim | WaldurSim) -> int:
    """Requests in the log since the last tally."""
    with sim.lock:
        return len(sim.requests)


CALLS: dict[str, Any] = {
    "set": setattr,
    "agent_update": lambda sim, ref, **changes: sim.agent_update(ref, **changes),
    "tally": tally,
    "answered": answered,
}


class RemoteSim:
    """A simulator in its own (spawned) process. Reads its facts as attributes; calls are serialized by a
    lock, so the driver and the sampler threads may both use it."""

    def __init__(self, desk: str, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._conn, self._lock = ours, threading.Lock()
        self._process = context.Process(target=serve, args=(theirs, desk, options), daemon=True, name=f"{desk}-sim")
        self._process.start()
        theirs.close()
        if not ours.poll(STARTUP_TIMEOUT):
            self._process.kill()
            raise RuntimeError(f"the {desk} simulator did not start within {STARTUP_TIMEOUT:g} s")
        self._facts: dict[str, Any] = ours.recv()
        self.desk = desk

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_facts"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in FORWARDED:
            self._call("set", name, value)
        object.__setattr__(self, name, value)

    def _call(self, call: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((call, args, kwargs))
            outcome, value = self._conn.recv()
        if outcome == "error":
            raise value
        return value

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def agent_update(self, ref: str, **changes: Any) -> None:
        self._call("agent_update", ref, **changes)

    def tally(self) -> tuple[Counter[str], int]:
        return self._call("tally")  # type: ignore[no-any-return]

    def answered(self) -> int:
        return int(self._call("answered"))

    def stop(self) -> None:
        """Stop the simulator and wait for its process (killed if it does not exit within 10 s)."""
        try:
            with self._lock:
                self._conn.send(("stop", (), {}))
        except OSError:
            pass  # already gone
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
