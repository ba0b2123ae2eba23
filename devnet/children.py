"""Child processes that cannot outlive the devnet, and the signals that stop it.

Every child is started in a session of its own (so a terminal's Ctrl-C reaches only the devnet,
which then stops its children in order) and, on Linux, with a parent-death signal: if the devnet
is SIGKILLed, the kernel SIGKILLs the child, and nothing is left holding ports. The parent-death
signal is set by a tiny exec wrapper (`python -m devnet.children PARENT_PID -- CMD...`) rather
than a `preexec_fn`, which is unsafe in a process that runs threads.

GNU make, the usual parent, passes SIGTERM on to its recipe, but on SIGINT or SIGHUP sent to make
alone it only waits for the recipe to end. `ParentWatch` notices that (make stops catching the
signal while it handles it) and stops the devnet, as it does when the parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def python_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with the repository on PYTHONPATH, so `python -m devnet...` works from any cwd."""
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
    return base


def dies_with_parent() -> bool:
    """Whether `spawn` can tie a child's life to this process: Linux only, and only from the main
    thread (the kernel sends the parent-death signal when the *thread* that forked ends)."""
    return sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()


def spawn(args: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Popen `args` in a new session, SIGKILLed by the kernel if this process dies first."""
    command = list(args)
    if dies_with_parent():
        command = [sys.executable, "-m", "devnet.children", str(os.getpid()), "--", *command]
        popen["env"] = python_env(popen.get("env"))
    return subprocess.Popen(command, start_new_session=True, **popen)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send `sig`, wait up to `timeout`, then SIGKILL the child's process group; always reap."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # its own session: the group is it and its children
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=10)


class Stopped(BaseException):
    """The first stop signal, raised in the main thread. A BaseException, like KeyboardInterrupt, so
    that `except Exception` in the code it interrupts lets it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP each raise `Stopped` once; later ones, or any once `stopping()`
    was called, are only recorded, so the clean-up they started is never interrupted. Installing
    replaces SIG_IGN too: a job started in the background by a script inherits SIGINT ignored."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._stopping = False

    def install(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def stopping(self) -> None:
        """Clean-up has begun: no signal may interrupt it from now on."""
        self._stopping = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if not self._stopping:
            self._stopping = True  # set before raising: the handler of a second signal sees it
            raise Stopped(signum)


def caught_signals(pid: int) -> set[int] | None:
    """The stop signals `pid` has a handler for (SigCgt in /proc), or None when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            mask = int(line.split()[1], 16)
            return {int(sig) for sig in STOP_SIGNALS if mask >> (int(sig) - 1) & 1}
    return None


class ParentWatch:
    """Calls `on_stop(signum)` once when the parent process dies (SIGTERM then) or starts dying
    from a stop signal it used to catch: GNU make resets a fatal signal's handler to the default
    while it waits for its recipe, and re-raises it once the recipe is gone."""

    def __init__(self, on_stop: Callable[[int], None], *, interval: float = 0.25) -> None:
        self.parent = os.getppid()
        self.caught = caught_signals(self.parent)  # None without /proc: then only the parent's death counts
        self._on_stop = on_stop
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parent-watch", daemon=True)

    def start(self) -> ParentWatch:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()

    def check(self) -> int | None:
        """The signal to stop with, or None while the parent is alive and well."""
        if os.getppid() != self.parent:
            return int(signal.SIGTERM)
        if self.caught is None:
            return None
        caught = caught_signals(self.parent)
        if caught is None:  # gone between the two reads
            return int(signal.SIGTERM)
        lost = self.caught - caught
        return min(lost) if lost else None

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            signum = self.check()
            if signum is not None:
                self._done.set()
                self._on_stop(signum)


def signal_main_thread(signum: int) -> None:
    """Deliver `signum` to the main thread, so that a blocking wait there is interrupted at once."""
    main = threading.main_thread().ident
    if main is not None:
        signal.pthread_kill(main, signum)


def _exec_with_parent_death_signal(argv: list[str]) -> int:
    """`PARENT_PID -- CMD...`: arm SIGKILL-on-parent-death, check the parent still lives, exec CMD."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m devnet.children PARENT_PID -- CMD [ARG...]", file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        print(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    if os.getppid() != parent:  # the parent died before the signal was armed
        return 1
    os.execvp(command[0], command)
    return 1  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(_exec_with_parent_death_signal(sys.argv[1:]))
