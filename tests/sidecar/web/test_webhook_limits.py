"""The webhook port's budgets (web.limits) and the rejection summary (web.rejections), on their own."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from pathlib import Path

from sidecar.observe.audit import Auditor
from sidecar.store.db import Store
from sidecar.web.limits import MAX_SOURCES, SourceLimits, source_key
from sidecar.web.rejections import SAMPLE, RejectionSummary


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(limits: SourceLimits, host: str, tries: int) -> int:
    return sum(1 for _ in range(tries) if limits.admit(host) == 0.0)


def test_each_source_has_its_own_budget_and_the_overall_cap_holds() -> None:
    clock = Clock()
    limits = SourceLimits(overall_per_second=1000, per_source=10, failures_per_source=2, clock=clock)
    assert admitted(limits, "127.0.0.2", 100) == 10  # the flooder gets its own budget only
    assert admitted(limits, "127.0.0.1", 10) == 10  # the other source is untouched by it
    clock.now += 1.0
    assert admitted(limits, "127.0.0.2", 100) == 10  # refilled at its rate

    capped = SourceLimits(overall_per_second=1, per_source=10, failures_per_source=2, clock=clock)
    assert admitted(capped, "10.0.0.1", 3) + admitted(capped, "10.0.0.2", 3) == 1  # the overall bucket's burst


def test_failed_authentication_has_a_smaller_budget_that_stops_the_source() -> None:
    clock = Clock()
    limits = SourceLimits(overall_per_second=1000, per_source=50, failures_per_source=2, clock=clock)
    for _ in range(2):
        assert limits.admit("203.0.113.9") == 0.0
        limits.failed("203.0.113.9")
    wait = limits.admit("203.0.113.9")
    assert wait > 0  # its request budget is far from spent: the failures stopped it
    assert limits.admit("203.0.113.10") == 0.0  # another source is not affected
    clock.now += wait
    assert limits.admit("203.0.113.9") == 0.0


def test_a_spray_of_addresses_cannot_grow_the_map_nor_free_a_flooder() -> None:
    clock = Clock()
    limits = SourceLimits(overall_per_second=100_000, per_source=1, failures_per_source=1, clock=clock)
    assert limits.admit("192.0.2.1") == 0.0
    assert limits.admit("192.0.2.1") > 0  # the flooder's budget is spent
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    for i in range(MAX_SOURCES - 1):  # as many others as fit beside it
        limits.admit(str(ipaddress.IPv4Address(base + i)))
    assert limits.admit("192.0.2.1") > 0  # it kept sending, so it was not the one forgotten
    for i in range(10_000):
        limits.admit(str(ipaddress.IPv4Address(base + MAX_SOURCES + i)))
    assert len(limits) == MAX_SOURCES


def test_an_ipv6_host_is_one_source_per_64_and_a_mapped_ipv4_peer_is_its_ipv4_address() -> None:
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:127.0.0.2") == source_key("127.0.0.2") == "127.0.0.2"
    clock = Clock()
    limits = SourceLimits(overall_per_second=1000, per_source=3, failures_per_source=3, clock=clock)
    hosts = [f"2001:db8:1:2::{i:x}" for i in range(1, 10)]
    assert sum(1 for host in hosts if limits.admit(host) == 0.0) == 3


async def test_the_summary_writes_one_row_per_desk_and_outcome_per_interval(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "s.db"))
    clock = Clock()
    try:
        summary = RejectionSummary(store, Auditor(store), interval=60.0, clock=clock)
        for i in range(40):
            summary.note("jira", "bad_signature", f"198.51.100.{i}", "bad signature")
            clock.now += 0.5
        summary.note("waldur", "rate_limited", "198.51.100.7", "too many requests")
        assert await summary.step() == 60.0
        assert await summary.step() == 60.0  # nothing noted since: nothing written
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    written = conn.execute("SELECT desk, status, details_json FROM audit WHERE event_type = 'webhook_rejections'")
    found = {(desk, status): json.loads(details) for desk, status, details in written}
    conn.close()
    assert set(found) == {("jira", "bad_signature"), ("waldur", "rate_limited")}
    jira = found[("jira", "bad_signature")]
    assert jira["count"] == 40 and len(jira["sources"]) == SAMPLE and jira["reasons"] == ["bad signature"]
    assert jira["first"] < jira["last"]
    assert found[("waldur", "rate_limited")]["count"] == 1
