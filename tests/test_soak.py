"""The soak's trend rule on synthetic series (bench.soak_trend), and a short real soak (~60 s) end to end.

The short soak runs `python -m bench.soak` as a process at 0.25 tickets/s with each ticket's six changes made
within 10 s (the full run's 12/s over a minute would swamp the 2-core CI machine that runs other test modules
alongside; see the module docstring of bench/soak.py); it takes the same path as `make soak`: the devnet
node, both simulators at 100 ms with their rate limits, the sidecar process, the sampler and the trend
check, and must exit 0 with its files written. It takes about 100 s of wall time (see the test's docstring
for why the warm-up is 40 s).
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import MIN_JUDGED, RAMP_MARGIN, default_warmup, rig_growth
from bench.soak import main as soak_main
from bench.soak_trend import Tolerance, floor, judge, slope, third_shift

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 60.0
SECONDS = range(600)  # one sample a second


def series(value: object) -> list[tuple[float, float]]:
    return [(float(t), float(value(t))) for t in SECONDS]  # type: ignore[operator]


def test_slope_and_shift_of_a_line() -> None:
    line = [(float(t), 2.0 * t + 5) for t in range(30)]
    assert math.isclose(slope(line), 2.0)
    assert math.isclose(third_shift(line), 40.0)  # medians of t=0..9 and t=20..29: 14 vs 54


def test_flat_series_with_noise_passes() -> None:
    rng = random.Random(1)
    trend = judge("rss_mb", series(lambda t: 80 + rng.gauss(0, 1.5)), WARMUP, Tolerance(5))
    assert not trend.upward, trend


def test_a_leak_fails() -> None:
    rng = random.Random(2)
    leak = series(lambda t: 80 + 0.02 * t + rng.gauss(0, 1.5))  # 20 KB/s: about 11 MB over the window
    trend = judge("rss_mb", leak, WARMUP, Tolerance(5))
    assert trend.upward, trend
    assert trend.rise > 5 and trend.shift > 5


def test_a_slow_leak_under_the_tolerance_passes() -> None:
    trend = judge("rss_mb", series(lambda t: 80 + 0.005 * t), WARMUP, Tolerance(5))  # 2.7 MB over the window
    assert not trend.upward, trend


def test_a_bounded_sawtooth_passes() -> None:
    """A WAL growing to a checkpoint and reset, cut anywhere by the window: no trend."""
    for period in (37, 90, 200):
        for phase in (0, 13, 61):
            saw = series(lambda t, p=period, f=phase: 4_000_000 * (((t + f) % p) / p))
            trend = judge("wal", saw, WARMUP, Tolerance(1_000_000))
            assert not trend.upward, (period, phase, trend)


def test_a_growing_sawtooth_fails() -> None:
    """Checkpoints that free less each time: the teeth climb."""
    saw = series(lambda t: 1_000 * t + 4_000_000 * ((t % 50) / 50))
    assert judge("wal", saw, WARMUP, Tolerance(100_000)).upward


def test_one_late_spike_passes() -> None:
    """A burst in the last seconds tilts the fitted line but not the last third's median."""
    spiky = series(lambda t: 500.0 if t > 580 else 10.0)
    trend = judge("queue_depth", spiky, WARMUP, Tolerance(50))
    assert trend.rise > 50, trend  # the slope alone would have failed it
    assert not trend.upward, trend


def test_warmup_growth_is_not_judged() -> None:
    """A queue filling during a long warm-up and steady after (judged from the start, it trends)."""
    ramp = series(lambda t: min(t, 300) * 10)
    assert not judge("queue_depth", ramp, 300, Tolerance(50)).upward
    assert judge("queue_depth", ramp, 0, Tolerance(50)).upward


def test_relative_tolerance_scales_with_the_series() -> None:
    per_ticket = series(lambda t: 20_000 + 5 * t)  # +2,700 B per ticket over the window: under 10% of 21 kB
    assert not judge("db_bytes_per_ticket", per_ticket, WARMUP, Tolerance(512, relative=0.1)).upward
    assert judge("db_bytes_per_ticket", per_ticket, WARMUP, Tolerance(512)).upward


def test_floor_of_connections_in_use_passes_and_a_descriptor_leak_fails() -> None:
    """Pooled connections opened in busier seconds and closed when idle, busier towards the end: the raw
    series trends, its 10 s floor does not; one descriptor leaked every 30 s raises the floor."""
    rng = random.Random(4)
    busy = series(lambda t: 30 + (rng.randint(0, 20) if rng.random() < 0.3 + 0.5 * t / 600 else 0))
    assert judge("open_fds", busy, WARMUP, Tolerance(4)).upward
    assert not judge("open_fds", floor(busy, 10), WARMUP, Tolerance(4)).upward
    leak = [(t, v + t // 30) for t, v in busy]
    assert judge("open_fds", floor(leak, 10), WARMUP, Tolerance(4)).upward


def test_floor_takes_the_trailing_minimum() -> None:
    assert floor([(0, 5), (1, 3), (2, 7), (3, 8), (10, 9)], 2.5) == [(0, 5), (1, 3), (2, 3), (3, 3), (10, 9)]


def test_too_few_samples_are_never_upward() -> None:
    assert not judge("x", [(100.0, 1.0), (101.0, 1e9)], WARMUP, Tolerance(1)).upward


def test_short_soak_passes_and_writes_its_files(tmp_path: Path) -> None:
    """70 s of load at 0.25 tickets/s, then up to 10 s of drain. The first 40 s are warm-up: the changes'
    ramp (10 s) and the sidecar's connections opened lazily as each path first runs (open fds climb for ~35 s)."""
    command = [
        sys.executable, "-m", "bench.soak", "--duration", "70", "--warmup", "40", "--rate", "0.25", "--spread", "10",
        "--drain", "10", "--seed", "3", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    doc = json.loads((tmp_path / "soak.json").read_text())
    assert doc["verdict"]["passed"] is True
    assert {t["name"] for t in doc["verdict"]["trends"]} == {
        "queue_depth", "cursor_lag", "cursor_lag_store", "rss_mb", "open_fds", "db_bytes_per_ticket"
    }  # fmt: skip
    samples = doc["samples"]
    assert len(samples) >= 60, len(samples)  # once a second over the 70 s (a few may miss under load)
    assert all(s["rss_mb"] > 0 and s["open_fds"] > 0 and s["db_bytes"] > 0 for s in samples)
    figures = {f["name"]: f["value"] for f in doc["figures"]}
    assert figures["tickets_created"] >= 14  # 0.25/s over 70 s, less what was still in flight
    assert figures["chain_updates"] > 0 and figures["desk_updates"] > 0
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "verdict: pass" in done.stdout
    # each rig process's CPU time in every sample, and the summary's first-versus-last shares of it
    rig = {"driver", "chain_app", "cometbft", "jira_sim", "waldur_sim"}
    assert all(s[f"rig_{name}_cpu_s"] >= 0 for s in samples for name in rig)
    assert all(samples[-1][f"rig_{n}_cpu_s"] > samples[0][f"rig_{n}_cpu_s"] for n in ("cometbft", "jira_sim"))
    assert "the rig's CPU share, first vs last 300 s judged: driver " in done.stdout


def test_the_rig_growth_line_gives_each_process_share_of_a_core_at_the_start_and_the_end() -> None:
    """A simulator whose CPU use doubles over the run reads so: its share over the first and last spans."""
    samples = [
        {"t": float(t), "rig_jira_sim_cpu_s": 0.1 * t + 0.001 * t * t, "rig_cometbft_cpu_s": 0.1 * t}
        for t in range(0, 1001)
    ]
    line = rig_growth(samples, warmup=100, duration=1000, span=100)
    assert line == "the rig's CPU share, first vs last 100 s judged: jira_sim 40% -> 200%, cometbft 10% -> 10%"


def test_the_default_warmup_outlasts_the_ramp() -> None:
    """A fifth of the run, at most 300 s, but never before the spread plus the pools' margin is over: a 120 s run
    at the default spread was judged from 24 s, while its open fds were still rising (it failed on them)."""
    assert default_warmup(3600, spread=60) == 300
    assert default_warmup(1000, spread=60) == 200
    assert default_warmup(120, spread=60) == 60 + RAMP_MARGIN
    assert default_warmup(120, spread=10) == 10 + RAMP_MARGIN


def test_a_run_too_short_to_judge_is_refused_before_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 with the reason, before any node or simulator starts (the parser refuses it)."""
    with pytest.raises(SystemExit) as stopped:
        soak_main(["--duration", "100", "--spread", "60", "--out", "/nonexistent/soak"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--duration 100 leaves 10 s after a warm-up of 90 s" in err
    assert f"at least {MIN_JUDGED:g} s must be judged" in err
