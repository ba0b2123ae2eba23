"""Does a soak series trend upward after warm-up? Pure functions, so the rule is tested on synthetic series.

The rule, for the samples after warm-up (a window of duration D seconds) and a series tolerance T:

    rise  = least-squares slope of value over time x D      (the fitted growth over the whole window)
    shift = median(last third of the window) - median(first third)

The series trends upward when rise > T AND shift > T. The slope alone is fooled by one late spike or a
sawtooth cut mid-tooth (a WAL checkpoint, a batch of jobs); the medians alone are fooled by a few large
outliers in one third. Together, a bounded sawtooth or noise passes (its medians do not move) and a leak
fails (both grow). T is absolute, or relative to the window's median for a series whose scale is not known
in advance (`Tolerance.relative`): the larger of the two applies.

A series whose samples swing with the work in flight (open file descriptors: pooled connections are opened as
concurrency rises and closed when idle) may be judged on its floor instead (`floor`: the smallest value in
the trailing `seconds`): what is in use comes and goes, a leaked descriptor never goes, so a leak raises the
floor while a busier minute does not.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Series = Sequence[tuple[float, float]]  # (seconds since the start, value)


@dataclass(frozen=True)
class Tolerance:
    absolute: float
    relative: float = 0.0  # a fraction of the window's median value

    def of(self, values: Sequence[float]) -> float:
        return max(self.absolute, self.relative * abs(statistics.median(values))) if values else self.absolute


@dataclass(frozen=True)
class Trend:
    """The window's figures for one series and the verdict."""

    name: str
    samples: int
    slope: float  # units per second
    rise: float  # slope x window duration
    shift: float  # last third's median - first third's
    tolerance: float
    upward: bool

    def describe(self, unit: str = "") -> str:
        verdict = "TRENDS UPWARD" if self.upward else "flat"
        return (
            f"{self.name}: {verdict}: fitted rise {self.rise:+,.2f}{unit} over the window, last third's median"
            f" {self.shift:+,.2f}{unit} vs the first's (tolerance {self.tolerance:,.2f}{unit}, {self.samples} samples)"
        )


def slope(series: Series) -> float:
    """The least-squares slope (value per second); 0 for fewer than two distinct times."""
    if len(series) < 2:
        return 0.0
    ts = [t for t, _ in series]
    vs = [v for _, v in series]
    mean_t, mean_v = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(ts, vs, strict=True)) / var


def third_shift(series: Series) -> float:
    """Median of the last third minus the median of the first third (0 for fewer than three samples)."""
    n = len(series) // 3
    if n == 0:
        return 0.0
    values = [v for _, v in series]
    return statistics.median(values[-n:]) - statistics.median(values[:n])


def after(series: Series, warmup: float) -> list[tuple[float, float]]:
    """The samples at or after `warmup` seconds."""
    return [(t, v) for t, v in series if t >= warmup]


def floor(series: Series, seconds: float) -> list[tuple[float, float]]:
    """Each sample replaced by the smallest value of the samples in the `seconds` before it (itself included)."""
    ordered = sorted(series)
    out = []
    for i, (t, _) in enumerate(ordered):
        j = i
        while j > 0 and ordered[j - 1][0] > t - seconds:
            j -= 1
        out.append((t, min(v for _, v in ordered[j : i + 1])))
    return out


def judge(name: str, series: Series, warmup: float, tolerance: Tolerance) -> Trend:
    """The rule above on the samples after `warmup` (too few samples to judge: never upward)."""
    window = sorted(after(series, warmup))
    if len(window) < 3:
        return Trend(name, len(window), 0.0, 0.0, 0.0, tolerance.absolute, False)
    duration = window[-1][0] - window[0][0]
    fitted = slope(window)
    rise = fitted * duration
    shift = third_shift(window)
    limit = tolerance.of([v for _, v in window])
    return Trend(name, len(window), fitted, rise, shift, limit, rise > limit and shift > limit)
