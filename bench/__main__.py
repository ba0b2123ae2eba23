"""python -m bench [NAME ...]: run the named benchmarks (default: all), then rewrite the README's figures
from the results files (bench.readme), so the README always shows the latest results."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "attachment_path": "bench.attachment_path",
    "desk_requests": "bench.desk_requests",
    "follower_backfill": "bench.follower_backfill",
    "inbound_latency": "bench.inbound_latency",
    "outbound_drain": "bench.outbound_drain",
    "outbound_latency": "bench.outbound_latency",
    "signer_throughput": "bench.signer_throughput",
    "store_commits": "bench.store_commits",
    "webhook_intake": "bench.webhook_intake",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        importlib.import_module(BENCHMARKS[name]).main()
    from bench.readme import main as rewrite_readme

    return rewrite_readme()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
