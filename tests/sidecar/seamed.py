"""`python -m tests.sidecar.seamed <args>`: the real servicedesk-sidecar CLI with test seams installed.

The product never reads SIDECAR_TEST_* (issue 12: the crash hook is not reachable in production); this
launcher is the one place that turns SIDECAR_TEST_CRASH_POINT into an installed hook, then runs the same
`main` as `python -m sidecar`. tests/sidecar/process.py uses it when a test sets that variable.
The signer's crash seam (`Signer(crash_at=...)`) is a constructor argument that app.py never passes;
tests/sidecar/chain/signer_proc.py sets it.
"""

from __future__ import annotations

import os
import signal
import sys

from sidecar.cli import main
from sidecar.sync.attach_out import install_upload_crash_hook
from sidecar.sync.outbound import install_crash_hook

CRASH_POINTS = ("after_desk_create", "after_attachment_upload")


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_seams() -> None:
    point = os.environ.pop("SIDECAR_TEST_CRASH_POINT", "")  # popped: `run` warns about variables it ignores
    if point and point not in CRASH_POINTS:
        raise SystemExit(f"unknown SIDECAR_TEST_CRASH_POINT {point!r} (known: {', '.join(CRASH_POINTS)})")
    if point == "after_desk_create":
        install_crash_hook(_crash)
    elif point == "after_attachment_upload":  # a desk accepted an upload; its row is not yet recorded
        install_upload_crash_hook(_crash)


if __name__ == "__main__":
    install_seams()
    sys.exit(main())
