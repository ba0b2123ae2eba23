"""pytest plugin: Jira and Waldur simulators (validation on) and a webhook receiver.

Each simulator fixture fails the test at teardown if any request or response broke the contract,
so a client that drifts from the desks' published APIs cannot pass its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim
from devnet.webhook_receiver import WebhookReceiver

Sim = TypeVar("Sim", JiraSim, WaldurSim)


def _assert_clean(sim: JiraSim | WaldurSim) -> None:
    violations = list(sim.contract_violations)
    assert not violations, "contract violations:\n" + "\n".join(violations)
    assert not sim.internal_errors, "simulator errors:\n" + "\n".join(sim.internal_errors)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A loopback endpoint recording raw webhook deliveries; `.url()` is where to point a sim."""
    with WebhookReceiver() as receiver:
        yield receiver


def _factory(cls: Callable[..., Sim]) -> Iterator[Callable[..., Sim]]:
    """Start simulators with custom options (validation on unless overridden); stop and check them after."""
    sims: list[Sim] = []

    def make(**options: Any) -> Sim:
        options.setdefault("validate", True)
        sim = cls(**options).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()
    for sim in sims:
        _assert_clean(sim)


@pytest.fixture
def make_jira_sim() -> Iterator[Callable[..., JiraSim]]:
    """Factory for Jira simulators with custom options (validation on unless overridden)."""
    yield from _factory(JiraSim)


@pytest.fixture
def jira_sim(make_jira_sim: Callable[..., JiraSim]) -> JiraSim:
    """A running Jira simulator with default options and contract validation on."""
    return make_jira_sim()


@pytest.fixture
def make_waldur_sim() -> Iterator[Callable[..., WaldurSim]]:
    """Factory for Waldur simulators with custom options (validation on unless overridden).

    The server-rule knobs (request_types, priorities, backend, role, user_email, user_full_name,
    statuses, status_transitions, agent_linked) default to a stock deployment: see devnet/waldur_rules.py.
    """
    yield from _factory(WaldurSim)


@pytest.fixture
def waldur_sim(make_waldur_sim: Callable[..., WaldurSim]) -> WaldurSim:
    """A running stock Waldur simulator (basic backend, support role, type "Service Request", no
    priorities) with model validation on."""
    return make_waldur_sim()
