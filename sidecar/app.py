"""The composition root: builds every component with explicit arguments and runs them in one TaskGroup.

Shutdown order (on SIGINT/SIGTERM or stop()): stop intake (HTTP, gRPC), stop the loops, let
in-flight work finish within the grace period, then close clients and the database last.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from sidecar.artifacts.base import ArtifactStore
from sidecar.artifacts.factory import open_store
from sidecar.chain.envelope import EnvelopeError, EnvelopeKey
from sidecar.chain.follower import ChainFollower, FollowerSettings, FollowerState
from sidecar.chain.heads import HeadTracker, head_subscription
from sidecar.chain.probe import ChainProbe
from sidecar.chain.rpc import CometRpc
from sidecar.chain.signer import Signer, build_signer
from sidecar.chain.subscription import websocket_url
from sidecar.config import Config
from sidecar.control.deps import ControlDeps
from sidecar.control.server import ControlServer
from sidecar.desks.base import Desk, ReadsChanges
from sidecar.desks.files import HasAttachments
from sidecar.desks.jira import JiraDesk
from sidecar.desks.waldur import WaldurDesk
from sidecar.errors import ConfigError, StoreError
from sidecar.listen import parse_listen
from sidecar.loops import run_loop
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.audit import Auditor, AuditRetention
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics, Service
from sidecar.secrets import forbid_core_dumps
from sidecar.store.audit import AuditEntry
from sidecar.store.db import Store
from sidecar.store.inbound import release_running_issues_txn
from sidecar.store.jobs import release_running_txn
from sidecar.store.pauses import PauseBook
from sidecar.sync.artifact_gc import ArtifactCollector
from sidecar.sync.attach_in import AttachmentIntake, IntakeSettings
from sidecar.sync.attach_out import AttachmentSettings, AttachmentSync
from sidecar.sync.content import ContentOpener
from sidecar.sync.inbound import InboundEngine, InboundSettings
from sidecar.sync.outbound import DeskWorker, Dispatcher, WorkerSettings
from sidecar.sync.registration import register_refs_as
from sidecar.sync.spool import clear_leftovers
from sidecar.sync.sweep import Sweeper
from sidecar.urls import public_url
from sidecar.wakeups import Wake, ringing
from sidecar.web.health import CachedFigures
from sidecar.web.server import ServerLimits, WebServer, build_observe_app, build_web_app
from sidecar.web.webhooks import WebhookReceiver

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 5.0
OBSERVE_MAX_CONNECTIONS = 64  # scrapers and operators on loopback: a small, fixed budget


def settings_digest(config: Config) -> str:
    """A hash of the effective non-secret settings: lets the audit log show that config changed."""
    canonical = json.dumps(asdict(config.settings), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def follower_settings(config: Config, desks: Sequence[str]) -> FollowerSettings:
    """`desks`: the desk clients this run serves; only their queued jobs hold the follower back."""
    chain = config.settings.chain
    return FollowerSettings(
        chain_id=chain.chain_id,
        start_height=chain.start_height,
        poll_interval=chain.poll_interval,
        no_block_alarm=chain.no_block_alarm,
        max_pending=config.settings.sync.max_pending,
        desks=tuple(desks),
    )


def support_key(config: Config) -> EnvelopeKey | None:
    """The X25519 key that opens payloads addressed to the support desk, if configured."""
    secret = config.secret("support_private_key")
    if secret is None:
        log.warning("no support_private_key: ticket content cannot be opened; desks get placeholders")
        return None
    try:
        return EnvelopeKey.from_base64(secret.reveal())
    except EnvelopeError:
        raise ConfigError(
            "support_private_key", "must be a base64 X25519 private key (32 bytes)", source=secret.source
        ) from None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class App:
    """One running sidecar. `ready` is set once every server listens; ports are then known."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ready = asyncio.Event()
        self.web_port: int | None = None
        self.observe_port: int | None = None  # None: /metrics and verbose health are on web_port
        self.grpc_port: int | None = None
        self.tasks: list[str] = []  # names of the background tasks this run started (for operators' tests)
        self.activity = ActivityFeed()  # what the components publish and WatchEvents streams
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        settings = self.config.settings
        store = await Store.open(settings.store.path)
        try:
            await self._run_with(store)
        finally:
            await store.close()
            log.info("stopped")

    async def _run_with(self, store: Store) -> None:
        settings = self.config.settings
        metrics = Metrics()
        health = HealthState()
        for desk, url in (("jira", settings.jira.base_url), ("waldur", settings.waldur.base_url)):
            health.desks[desk] = "unknown" if url and settings.enabled else "not_configured"
        if all(state == "not_configured" for state in health.desks.values()):
            log.warning("no desk configured: following the chain only (set jira.base_url or waldur.base_url)")
        if not settings.enabled:
            log.warning("servicedesk.enabled is false: serving health and metrics only")
        auditor = Auditor(store, enabled=settings.audit.enabled)
        retention = AuditRetention(store, auditor, settings.audit.retention_days)
        await auditor.record(self._config_audit())
        pauses = await PauseBook.load(store)  # operators' pauses survive restarts; the engines ask this copy
        activity = self.activity

        rpc = CometRpc(settings.chain.rpc_url, settings.chain.request_timeout)
        ws_url = settings.chain.ws_url or websocket_url(settings.chain.rpc_url)
        either_way = settings.sync.enable_outbound or settings.sync.enable_inbound
        clients = self._desks(metrics) if settings.enabled and either_way else []
        receiver = (
            self._receiver(store, auditor, metrics, clients) if settings.webhook.enabled and settings.enabled else None
        )
        figures = CachedFigures(store, pauses=pauses)
        web, observe = self._web_servers(store, health, metrics, receiver, figures)
        self.web_port = web.port
        self.observe_port = observe.port if observe is not None else None
        desks = clients if settings.sync.enable_outbound else []
        key = support_key(self.config)
        opener = ContentOpener(store, key)
        artifacts = self._artifacts(key)
        spool = self._spool_dir()
        clear_leftovers(spool)  # before any transfer starts: what is there was left by a killed process
        signer = self._signer(rpc, store, metrics, auditor, ws_url, health) if settings.enabled else None
        own = [signer.status.address] if signer is not None else []
        register = register_refs_as(signer.status.address) if signer is not None else None
        served = [d.name for d in desks]
        dispatcher = Dispatcher(store, served, own_addresses=own, batch=settings.sync.batch_size)
        outbound_files = (
            AttachmentSync(
                store,
                artifacts,
                key,
                auditor,
                AttachmentSettings(
                    max_bytes=settings.sync.max_attachment_bytes,
                    allowed_types=tuple(settings.sync.allowed_content_types),
                    spool_dir=spool,
                ),
            )
            if artifacts is not None and key is not None
            else None
        )
        workers = [
            DeskWorker(
                desk,
                store,
                opener,
                auditor,
                metrics,
                health,
                settings.retry,
                WorkerSettings(
                    concurrency=self._concurrency(desk.name),
                    keep_bases=settings.sync.enable_inbound and signer is not None,
                ),
                register=register,
                pauses=pauses,
                activity=activity,
                attachments=outbound_files,
                own_senders=own,
            )
            for desk in desks
        ]
        inbound, sweeper = self._inbound(
            clients, served, store, auditor, metrics, signer, key, pauses, artifacts, spool
        )
        deps = ControlDeps(
            store,
            health,
            auditor,
            outbound_desks=list(served),
            inbound_desks=list(inbound.desks) if inbound else [],
            signer=signer,
            rpc=rpc,
            opener=opener,
            fee_denom=settings.chain.fee_denom,
            allow_content=settings.grpc.allow_content,
            desk_readers={d.name: d for d in clients if isinstance(d, ReadsChanges)},
            support_key=key,
            pauses=pauses,
            activity=activity,
        )
        control = ControlServer.from_settings(settings, self.config.secrets, deps) if settings.grpc.enabled else None
        await store.write("release running jobs", release_running_txn, time.time())
        await store.write("release running re-reads", release_running_issues_txn, time.time())
        if control is not None:
            self.grpc_port = control.port
            await control.start()
        probe = ChainProbe(rpc, health, metrics, settings.chain.chain_id)
        heads = HeadTracker()
        head_watch = head_subscription(ws_url, heads, metrics, settings.chain.no_block_alarm)
        follower = ChainFollower(
            rpc, store, probe, heads, health, metrics, follower_settings(self.config, served), key, activity=activity
        )

        def caught_up() -> bool:
            """The follower has read the chain to its head: no payload naming an object is still unread, and
            the mirror inbound sync decides against holds the chain's latest changes."""
            cursor = follower.cursor
            return (
                follower.state is FollowerState.FOLLOWING
                and cursor is not None
                and heads.height > 0
                and cursor.height + 2 >= heads.height
            )

        if inbound is not None:
            inbound.chain_ready = caught_up
        collector = (
            ArtifactCollector(store, artifacts, auditor, settings.audit.retention_days, caught_up=caught_up)
            if artifacts is not None
            else None
        )

        async def refresh_health() -> float:
            queue = await figures.get()
            metrics.set_queue(queue.pending_events, queue.failed_events)
            metrics.set_inbound(queue.conflicts_open, queue.inbound_queue)
            metrics.set_jobs(queue.desk_jobs)
            metrics.set_paused((p.direction, p.desk) for p in pauses.pauses)  # the in-memory book: no read
            metrics.set_health(health.healthy, health.chain.reachable)
            if control is not None:
                await control.refresh_health()
            return 2.0

        loop_stop = asyncio.Event()
        # Everything built so far (modules, configuration, components) lives as long as the process: out of
        # the collector's generations, it is no longer re-scanned by every full collection, which a backfill's
        # parsing triggers often (measured: parsing, decoding and opening 10,000 events took 520 ms, 445 ms
        # frozen, 400 ms with no collection at all). Garbage is collected first, so that none of it is kept.
        gc.collect()
        gc.freeze()
        try:
            async with asyncio.TaskGroup() as tg:

                def start(coro: Coroutine[Any, Any, None], name: str) -> None:
                    self.tasks.append(name)
                    tg.create_task(coro, name=name)

                start(web.serve(), "web")
                if observe is not None:
                    start(observe.serve(), "web-observe")
                if settings.enabled:
                    w = _wakes(workers, signer, inbound)
                    follow = ringing(follower.step, lambda: follower.cursor, [w.dispatcher])
                    start(run_loop("chain-follower", follow, loop_stop, metrics), "chain-follower")
                    start(head_watch.run(loop_stop), "chain-heads")
                    dispatch = ringing(dispatcher.step, lambda: dispatcher.dispatched, list(w.workers.values()))
                    start(run_loop("dispatcher", dispatch, loop_stop, metrics, wake=w.dispatcher), "dispatcher")
                    if signer is not None:
                        sign = ringing(signer.step, lambda: _settled(signer), [w.inbound])
                        start(run_loop("chain-signer", sign, loop_stop, metrics, wake=w.signer), "chain-signer")
                        if signer.watcher is not None:
                            start(signer.watcher.subscription.run(loop_stop), "chain-tx-watch")
                    if inbound is not None and sweeper is not None:
                        inbound.on_worked = w.signer.ring  # each re-read's intents, not at the step's end
                        start(run_loop("inbound", inbound.step, loop_stop, metrics, wake=w.inbound), "inbound")
                        if receiver is not None:  # a new hint wakes the engine (it waits for the follower)
                            receiver.on_accepted = w.inbound.ring
                        start(run_loop("inbound-sweep", sweeper.step, loop_stop, metrics), "inbound-sweep")
                    if collector is not None:
                        start(run_loop("artifact-gc", collector.step, loop_stop, metrics), "artifact-gc")
                    for worker in workers:
                        name = f"desk-{worker.desk.name}"
                        desk_step = ringing(worker.step, _jobs_run(worker), [w.signer])
                        desk_wake = w.workers[worker.desk.name]
                        start(run_loop(name, desk_step, loop_stop, metrics, wake=desk_wake), name)
                        start(run_loop(f"{name}-health", worker.check, loop_stop, metrics), f"{name}-health")
                start(run_loop("health", refresh_health, loop_stop, metrics), "health")
                start(run_loop("audit-retention", retention.step, loop_stop, metrics), "audit-retention")
                if receiver is not None:
                    summary = receiver.rejections.step
                    start(run_loop("webhook-rejections", summary, loop_stop, metrics), "webhook-rejections")
                await web.wait_started()
                if observe is not None:
                    await observe.wait_started()
                self.ready.set()
                log.info(
                    "started",
                    extra={
                        "http": f"{web.host}:{web.port}",
                        "observe": observe.address if observe is not None else "on the http port",
                        "grpc": settings.grpc.listen if control else "disabled",
                        "grpc_port": self.grpc_port,
                        "store": settings.store.path,
                        "chain_rpc": public_url(settings.chain.rpc_url),
                    },
                )
                await self._stop.wait()
                log.info("stopping")
                web.stop()
                if observe is not None:
                    observe.stop()
                activity.close()  # watch streams end now, not at the end of the gRPC grace
                if control is not None:
                    await control.stop(SHUTDOWN_GRACE)
                loop_stop.set()
        finally:
            web.stop()
            if observe is not None:
                observe.stop()
            if control is not None:
                await control.stop(0)  # a no-op after the graceful stop above; needed when a task failed
            await rpc.aclose()
            for client in clients:
                await client.aclose()
            if artifacts is not None:
                await artifacts.aclose()
            if receiver is not None:
                await _flush_rejections(receiver)  # after the web server stopped: nothing noted after this

    def _web_servers(
        self,
        store: Store,
        health: HealthState,
        metrics: Metrics,
        receiver: WebhookReceiver | None,
        figures: CachedFigures,
    ) -> tuple[WebServer, WebServer | None]:
        """The public server and, unless observe.listen is empty, the observe server (both bound)."""
        settings = self.config.settings
        hook, observe_listen = settings.webhook, settings.observe.listen
        same = observe_listen and parse_listen(observe_listen) == parse_listen(hook.listen_addr)
        if same and parse_listen(observe_listen)[1] != 0:  # port 0 twice is two free ports
            raise ConfigError(
                "observe.listen",
                "must differ from webhook.listen_addr (empty serves /metrics on the webhook port)",
                source=self.config.sources["observe.listen"],
            )
        limits = ServerLimits(read_timeout=hook.read_timeout, max_connections=hook.max_connections)
        public = build_web_app(
            hook.path_prefix, store, health, metrics, receiver, figures=figures, observe=not observe_listen
        )
        web = self._bind("webhook.listen_addr", public, hook.listen_addr, limits, hook.trusted_proxies)
        if not observe_listen:
            return web, None
        try:
            observed = build_observe_app(hook.path_prefix, store, health, metrics, figures=figures)
            observe_limits = ServerLimits(read_timeout=hook.read_timeout, max_connections=OBSERVE_MAX_CONNECTIONS)
            return web, self._bind("observe.listen", observed, observe_listen, observe_limits, ())
        except BaseException:
            web.close()
            raise

    def _bind(self, key: str, app: Starlette, listen: str, limits: ServerLimits, trusted: tuple[str, ...]) -> WebServer:
        """A bind failure (port taken, address not on this host) is a configuration error naming the key."""
        try:
            return WebServer(app, listen, limits, trusted_proxies=trusted)
        except OSError as exc:
            raise ConfigError(
                key, f"cannot listen on {listen}: {exc.strerror or exc}", source=self.config.sources[key]
            ) from None

    def _receiver(self, store: Store, auditor: Auditor, metrics: Metrics, clients: Sequence[Desk]) -> WebhookReceiver:
        secrets: dict[Service, str | None] = {}
        for desk in ("jira", "waldur"):
            secret = self.config.secret(f"{desk}_webhook_secret")
            secrets[desk] = secret.reveal() if secret is not None else None
        readers = {d.name: d for d in clients if isinstance(d, ReadsChanges)}
        configured = self.config.settings.jira.account_id or None

        def own(desk: Service) -> str | None:
            """The sidecar's account at the desk as that desk's client knows it (Waldur's: GET /users/me/)."""
            reader = readers.get(desk)
            return reader.own_account() if reader is not None else configured if desk == "jira" else None

        return WebhookReceiver(self.config.settings.webhook, secrets, store, auditor, metrics, own)

    def _signer(
        self, rpc: CometRpc, store: Store, metrics: Metrics, auditor: Auditor, ws_url: str, health: HealthState
    ) -> Signer | None:
        """The signer owns the operator's key; without a key nothing is written to the chain (said once)."""
        if not self.config.settings.chain.key_file and self.config.secret("signing_key") is None:
            log.warning("no signing key (chain.key_file or secret signing_key): desk refs are not registered on chain")
            return None
        chain, secrets = self.config.settings.chain, self.config.secrets
        signer = build_signer(chain, secrets, rpc, store, metrics, auditor, ws_url, health, self.activity)
        log.info("signing key loaded", extra={"address": signer.status.address})
        return signer

    def _inbound(
        self,
        clients: Sequence[Desk],
        outbound: Sequence[str],
        store: Store,
        auditor: Auditor,
        metrics: Metrics,
        signer: Signer | None,
        key: EnvelopeKey | None,
        pauses: PauseBook,
        artifacts: ArtifactStore | None,
        spool: Path,
    ) -> tuple[InboundEngine | None, Sweeper | None]:
        """The inbound engine and its sweep, when inbound is on and there is a key to sign its Msgs with."""
        settings = self.config.settings
        readers = [d for d in clients if isinstance(d, ReadsChanges)]
        if not settings.enabled or not settings.sync.enable_inbound or not readers:
            return None, None
        if signer is None:
            log.warning("no signing key: desk changes are not synced to the chain (inbound sync is off)")
            return None, None
        intake = (
            AttachmentIntake(
                [d for d in readers if isinstance(d, HasAttachments)],
                store,
                artifacts,
                auditor,
                settings.retry,
                IntakeSettings(
                    max_bytes=settings.sync.max_attachment_bytes,
                    allowed_types=tuple(settings.sync.allowed_content_types),
                ),
                sender=signer.status.address,
                key=key,
                spool_dir=spool,
            )
            if artifacts is not None and key is not None
            else None
        )
        engine = InboundEngine(
            readers,  # type: ignore[arg-type]  # JiraDesk and WaldurDesk carry their mapping tables
            store,
            auditor,
            metrics,
            settings.retry,
            InboundSettings(
                strategy=settings.sync.conflict_resolution,
                desk_concurrency={desk.name: self._concurrency(desk.name) for desk in readers},
            ),
            sender=signer.status.address,
            key=key,
            outbound_desks=outbound,
            pauses=pauses,
            activity=self.activity,
            attachments=intake,
        )
        sweeper = Sweeper(readers, store, settings.sync.sync_interval, pauses=pauses)
        return engine, sweeper

    def _artifacts(self, key: EnvelopeKey | None) -> ArtifactStore | None:
        """The artifact store attachments travel through, when they are synced at all (they need the support key
        to be opened or sealed)."""
        settings = self.config.settings
        if not settings.enabled or not settings.sync.sync_attachments:
            return None
        if key is None:
            log.warning("no support_private_key: attachments are not synced (they cannot be opened or sealed)")
            return None
        return open_store(settings, self.config.secrets, self.config.sources)

    def _spool_dir(self) -> Path:
        """Where attachments in flight are spooled (0600 files, deleted after use): beside the database."""
        return Path(os.path.abspath(self.config.settings.store.path)).parent / "spool"

    def _concurrency(self, desk: str) -> int:
        settings = self.config.settings
        return settings.jira.max_concurrency if desk == "jira" else settings.waldur.max_concurrency

    def _desks(self, metrics: Metrics) -> list[Desk]:
        """One long-lived client per configured desk; app.run closes them at shutdown."""
        settings = self.config.settings
        insecure = settings.sync.allow_insecure_http
        desks: list[Desk] = []
        jira_token, waldur_token = self.config.secret("jira_api_token"), self.config.secret("waldur_token")
        if settings.jira.base_url and jira_token is not None:
            desks.append(JiraDesk(settings.jira, jira_token.reveal(), metrics=metrics, allow_insecure_http=insecure))
        if settings.waldur.base_url and waldur_token is not None:
            for key_path in ("waldur.organization_uuid", "waldur.project_uuid"):
                value = getattr(settings.waldur, key_path.split(".")[1])
                if value and not _is_uuid(value):
                    raise ConfigError(key_path, f"must be a UUID (got {value})", source=self.config.sources[key_path])

            desks.append(
                WaldurDesk(settings.waldur, waldur_token.reveal(), metrics=metrics, allow_insecure_http=insecure)
            )
        return desks

    def _config_audit(self) -> AuditEntry:
        settings = self.config.settings
        return AuditEntry(
            event_type="config_loaded",
            actor="sidecar",
            status="ok",
            details={
                "settings_sha256": settings_digest(self.config),
                "file": self.config.file,
                "desks": sorted(
                    d for d, url in (("jira", settings.jira.base_url), ("waldur", settings.waldur.base_url)) if url
                ),
                "secrets": sorted(self.config.secrets),
            },
        )


@dataclass(frozen=True)
class _Wakes:
    """The doorbells of the loops work is handed to (sidecar/wakeups.py). Each cuts only its loop's idle
    wait: a longer wait is a backoff the step asked for."""

    dispatcher: Wake
    workers: dict[str, Wake]
    signer: Wake
    inbound: Wake


def _wakes(workers: Sequence[DeskWorker], signer: Signer | None, inbound: InboundEngine | None) -> _Wakes:
    """The doorbells; who rings whom is wired in App._run_with: the follower's new blocks -> dispatcher ->
    desk workers -> signer (ref registrations); accepted webhooks -> inbound engine (re-reads) -> signer ->
    inbound engine (reports). The sweep does not ring: its re-reads are not urgent."""
    return _Wakes(
        dispatcher=Wake(up_to=Dispatcher.IDLE_WAIT),
        workers={w.desk.name: Wake(up_to=w.idle_wait) for w in workers},
        signer=Wake(up_to=signer.settings.idle_interval if signer is not None else 0.0),
        inbound=Wake(up_to=inbound.idle_wait if inbound is not None else 0.0),
    )


def _jobs_run(worker: DeskWorker) -> Callable[[], int]:
    return lambda: worker.jobs_run


def _settled(signer: Signer) -> tuple[int, int]:
    """Intents the signer saw reach a final state (any sender's): each step's counts, read from the store."""
    counts = signer.status.counts
    return counts.get("included", 0), counts.get("dead", 0)


async def _flush_rejections(receiver: WebhookReceiver) -> None:
    """The last summary of rejected webhooks; it is logged before it is written, so a failure here loses
    only its audit row, and must not hide the error that may be stopping the app."""
    try:
        await receiver.rejections.flush()
    except (StoreError, sqlite3.Error) as exc:
        log.warning("webhook rejections not audited at shutdown", extra={"error": str(exc)})


async def run_until_signalled(config: Config) -> int:
    """Run the app until SIGINT or SIGTERM; return the process exit code.

    The process entry point: files it creates are private (umask 077) and, once any secret is loaded,
    nothing of it can reach a core file."""
    os.umask(0o077)
    if config.secrets or config.settings.chain.key_file:
        forbid_core_dumps()
    app = App(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop)
    try:
        await app.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    stray = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if stray:
        log.error("tasks still running at shutdown", extra={"tasks": stray})
        return 1
    return 0
