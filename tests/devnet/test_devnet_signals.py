"""`make devnet` stops everything it started, whichever signal stops it and however it was started.

Each case starts a real devnet (the real node, the simulators, the sidecar), records every process
in its tree and every port they listen on while it runs, sends one signal, and then finds none of
those processes alive and none of those ports listening. The devnet must also say it stopped in
order: the parent-death signal alone would pass the process check, but not that one. Two quick
tests at the end show the two mechanisms (parent-death signal, SIGINT taken back) without a node.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devnet.children import caught_signals, python_env
from devnet.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# The lightest devnet that still runs every part: one sample ticket, no periodic ones, no status lines.
LIGHT = "--samples 1 --ticket-every 3600 --status-every 3600"
START_TIMEOUT = 240.0  # a cold start on a busy 2-core machine
STOP_TIMEOUT = 120.0  # the sidecar gets 20 s, each node process 15 s, before SIGKILL
# What a running devnet's tree must hold, by command line.
EXPECTED = {"devnet": "-m devnet ", "chain_app": "-m devnet.chain_app", "cometbft": "cometbft start",
            "sidecar": "-m sidecar run"}



# --- /proc ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    start: str  # starttime from /proc/PID/stat: a reused pid has another
    cmdline: str


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, starttime), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # fields 3.. (comm may hold spaces and parentheses)
    return fields[0], int(fields[1]), fields[19]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_tree(root: int) -> dict[int, Proc]:
    """`root` and all its descendants now."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)], starts[int(entry)] = stat[1], stat[2]
    tree = {root} if root in parents else set()
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree and pid not in tree}
        tree |= more
        grew = bool(more)
    return {pid: Proc(pid, starts[pid], _cmdline(pid)) for pid in tree}


def alive(proc: Proc) -> bool:
    """Still running: a reused pid is someone else, and a zombie holds no ports and runs nothing. But
    a SIGKILLed leader turns zombie while its other threads still exit holding the process's files,
    so the process counts as gone only once every thread is a zombie or dead."""
    stat = _stat(proc.pid)
    if stat is None or stat[2] != proc.start:
        return False
    try:
        tasks = os.listdir(f"/proc/{proc.pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            state = Path(f"/proc/{proc.pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False


def listening(pids: set[int] | None = None) -> set[tuple[int, str]]:
    """(port, socket inode) of TCP sockets in LISTEN state that `pids` hold (all when None). A socket's
    inode is never reused while the machine runs, so it names the socket, not merely its port."""
    inodes: set[str] | None = None
    if pids is not None:
        inodes = set()
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and (inodes is None or cols[9] in inodes):  # 0A: TCP_LISTEN
                found.add((int(cols[1].rsplit(":", 1)[1], 16), cols[9]))
    return found


def ignored_signals(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {sig for sig in range(1, 65) if mask >> (sig - 1) & 1}
    return set()


# --- a devnet under test -------------------------------------------------------------------------
@dataclass
class Devnet:
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    seen: dict[int, Proc] = field(default_factory=dict)
    sockets: set[tuple[int, str]] = field(default_factory=set)  # (port, inode) the tree listens on
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    def find(self, role: str) -> Proc:
        found = [p for p in self.seen.values() if EXPECTED[role] in p.cmdline + " "]
        assert len(found) == 1, f"expected one {role} process, found {found}"
        return found[0]

    @property
    def ports(self) -> set[int]:
        return {port for port, _ in self.sockets}

    def held(self) -> list[int]:
        """Ports on which one of the devnet's listening sockets is still open, in any process."""
        return sorted(port for port, inode in listening() if (port, inode) in self.sockets)

    def wait_up(self) -> None:
        """Until the banner is out and every port it names listens; then record the tree and its sockets."""
        def up_or_exited() -> bool:
            return self.proc.poll() is not None or "created sample tickets" in self.text

        wait_until(up_or_exited, timeout=START_TIMEOUT, what="the devnet's banner", interval=0.2)
        assert self.proc.poll() is None, f"the devnet exited during start-up:\n{self.text}"
        named = {int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", self.text)}
        assert len(named) >= 5, self.text  # chain RPC, Jira, Waldur, the sidecar's webhooks and gRPC

        def all_listening() -> bool:
            self.seen = process_tree(self.proc.pid)
            self.sockets = listening(set(self.seen))
            return named <= self.ports

        wait_until(all_listening, timeout=60, what=f"the banner's ports {sorted(named)} to listen", interval=0.2)
        for role in EXPECTED:
            self.find(role)

    def left(self) -> list[Proc]:
        return [p for p in self.seen.values() if alive(p)]

    def wait_gone(self) -> None:
        wait_until(lambda: not self.left(), timeout=STOP_TIMEOUT, what="every devnet process to exit",
                   interval=0.2)

    def kill_all(self) -> None:
        """Teardown after a failure: SIGKILL whatever is left, so no test leaks a devnet."""
        for p in self.left():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        if self.reader is not None:
            self.reader.join(timeout=30)  # EOF once every holder of the pipe is gone
        assert self.proc.stdout is not None
        self.proc.stdout.close()


StartDevnet = Callable[[list[str]], Devnet]
# Runs argv with SIGTERM, SIGINT and SIGHUP at their defaults, as at a terminal, even when pytest
# itself inherited one ignored (`nohup`, a script's background job): make catches only what it
# did not inherit ignored.
AS_AT_A_TERMINAL = [sys.executable, "-c", "import os, signal, sys\n"
                    "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)\n"
                    "os.execvp(sys.argv[1], sys.argv[1:])"]


def make_command() -> list[str]:
    """`make devnet`, with this interpreter's virtualenv as VENV and `-o` on its install stamp: the
    test is about stopping the devnet, and must never reinstall the virtualenv under other tests."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"make devnet needs a virtualenv; this interpreter's prefix {venv} is not one")
    return ["make", "--no-print-directory", "-o", f"{venv}/.installed", f"VENV={venv}", "devnet",
            f"DEVNET_ARGS={LIGHT}"]


@pytest.fixture
def start_devnet(cometbft_bin: Path, tmp_path: Path) -> Iterator[StartDevnet]:
    started: list[Devnet] = []

    def start(argv: list[str]) -> Devnet:
        env = python_env({**os.environ, "DEVNET_HOME": str(tmp_path / "devnet")})
        # A session of its own: signals for the process group reach the devnet, never pytest.
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        devnet = Devnet(proc)
        started.append(devnet)
        devnet.reader = threading.Thread(target=devnet.read, daemon=True)
        devnet.reader.start()
        devnet.wait_up()
        return devnet

    yield start
    for devnet in started:
        devnet.kill_all()


def assert_stopped_cleanly(devnet: Devnet, signum: int) -> None:
    devnet.wait_gone()
    assert not devnet.held(), f"ports still listening after the devnet stopped: {devnet.held()}"
    name = signal.Signals(signum).name
    assert re.search(rf"devnet: {name} received, stopping everything it started", devnet.text), devnet.text
    assert "devnet: stopped" in devnet.text, devnet.text
    assert not re.search(r"devnet: stopping \S+ failed", devnet.text), devnet.text


# --- the cases -----------------------------------------------------------------------------------
@pytest.mark.node
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_to_make_stops_everything(start_devnet: StartDevnet, signum: int) -> None:
    """`kill -TERM|-HUP|-INT <pid of make>`: make passes on only SIGTERM, and merely waits for the
    devnet on the others; either way every process goes and every port is freed."""
    devnet = start_devnet([*AS_AT_A_TERMINAL, *make_command()])
    assert signum in (caught_signals(devnet.proc.pid) or set()), "make must catch the signal, as at a terminal"
    assert len(devnet.ports) >= 7, devnet.ports  # and the node's P2P and ABCI ports
    os.kill(devnet.proc.pid, signum)  # make only, as kill(1) does
    assert_stopped_cleanly(devnet, signum)
    assert devnet.proc.wait(timeout=30) != 0


@pytest.mark.node
def test_sigint_stops_a_devnet_a_script_started_in_the_background(start_devnet: StartDevnet) -> None:
    """`make devnet &` from a script: the shell sets SIGINT to ignored for the job, which make and the
    devnet inherit. The devnet takes SIGINT back, so a SIGINT to the group (`kill -INT 0` in the
    script, a CI runner's interrupt) still stops it all."""
    script = " ".join(f"'{arg}'" for arg in make_command()) + " & wait"
    devnet = start_devnet(["bash", "-c", script])
    make = next(p for p in devnet.seen.values() if p.cmdline.startswith("make "))
    assert signal.SIGINT in ignored_signals(make.pid), "the case needs SIGINT ignored, as a script's job has"
    assert signal.SIGINT not in ignored_signals(devnet.find("devnet").pid)
    os.killpg(devnet.proc.pid, signal.SIGINT)
    assert_stopped_cleanly(devnet, signal.SIGINT)


@pytest.mark.node
def test_children_die_with_a_sigkilled_devnet(start_devnet: StartDevnet) -> None:
    """SIGKILL cannot be handled: the kernel's parent-death signal takes the node, its app and the
    sidecar down with the devnet, so nothing is orphaned holding ports."""
    devnet = start_devnet([sys.executable, "-m", "devnet", *LIGHT.split()])
    children = [devnet.find(role) for role in ("chain_app", "cometbft", "sidecar")]
    os.kill(devnet.find("devnet").pid, signal.SIGKILL)
    devnet.wait_gone()
    assert not [p for p in children if alive(p)]
    assert not devnet.held(), f"ports still listening after the devnet was killed: {devnet.held()}"


# --- the two mechanisms, without a node ----------------------------------------------------------
def _python(code: str, *, ignoring_sigint: bool = False) -> subprocess.Popen[str]:
    """`python -c code`; with `ignoring_sigint`, started with SIGINT ignored, as a script's background job is."""
    launcher = [sys.executable, "-c", "import os, signal, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "os.execvp(sys.argv[1], sys.argv[1:])"] if ignoring_sigint else []
    return subprocess.Popen([*launcher, sys.executable, "-c", code], cwd=REPO_ROOT, env=python_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)


def test_a_spawned_child_is_killed_with_its_parent() -> None:
    parent = _python("import time\nfrom devnet.children import spawn\n"
                     "child = spawn(['sleep', '300'])\nprint(child.pid, flush=True)\ntime.sleep(300)")
    assert parent.stdout is not None
    with parent.stdout:
        pid = int(parent.stdout.readline())
        wait_until(lambda: _cmdline(pid).startswith("sleep 300"), timeout=30, what="the wrapper to exec sleep")
        child = process_tree(pid)[pid]
        try:
            assert alive(child)
            parent.kill()  # SIGKILL: no clean-up of its own runs
            parent.wait(timeout=30)
            wait_until(lambda: not alive(child), timeout=30, what="the orphaned child to be killed")
        finally:
            if alive(child):
                os.kill(child.pid, signal.SIGKILL)
            parent.kill()
            parent.wait(timeout=30)


def test_stop_signals_take_back_an_inherited_ignored_sigint() -> None:
    """A script's background job starts with SIGINT ignored; StopSignals still turns it into Stopped.
    (Were the SIGINT still ignored, the child would print nothing and end after its 60 s sleep.)"""
    code = ("import signal, time\nfrom devnet.children import StopSignals, Stopped\n"
            "ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "StopSignals().install()\n"
            "try:\n    print('ignored' if ignored else 'default', flush=True)\n    time.sleep(60)\n"
            "except Stopped as exc:\n    print('stopped', exc.signum, flush=True)")
    proc = _python(code, ignoring_sigint=True)
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline().strip() == "ignored"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().split() == ["stopped", str(int(signal.SIGINT))]
    assert proc.wait(timeout=30) == 0
