"""`keiko run`: the store, every enabled component and the HTTP API on one event loop.

Start order is store, components (downstream stages first: alerting, analytics, probes,
then receivers, so that intake opens last), then the API. Shutdown runs in reverse within
``api.shutdown_grace``: receivers stop taking data before the stages behind them flush,
and the store closes last. SIGTERM/SIGINT stop gracefully (a second one exits at once),
SIGHUP reloads the config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from keiko.api.app import build_app
from keiko.api.server import ApiServer
from keiko.api.state import ApiState
from keiko.components import SECTIONS, Component, ComponentSpec, Context, registry
from keiko.config import ConfigError, KeikoConfig, load_config
from keiko.listeners import listeners, otel_sdk_hints
from keiko.logs import setup_logging
from keiko.partitioning import PARTITIONED_STREAMS
from keiko.reload import diff
from keiko.store import open_store
from keiko.store.base import Store
from keiko.stream.partitions import PartitionedStage
from keiko.stream.worker import StreamWorker
from keiko.telemetry import Telemetry

log = logging.getLogger("keiko.process")

STATS_INTERVAL = 2.0  # seconds between refreshes of the store figures /metrics shows
SHUTDOWN_SLACK = 2.0  # beyond api.shutdown_grace before a stuck shutdown is abandoned


class StartupError(Exception):
    """A part of keiko could not start; the message names the part and the cause."""


def build_components(ctx: Context) -> list[tuple[str, Component]]:
    """``(section.name, component)`` for every enabled one, downstream stages first."""
    specs = registry()
    built: list[tuple[str, Component]] = []
    for section in reversed(SECTIONS):
        for (sec, name), spec in sorted(specs.items()):
            if sec != section:
                continue
            config = ctx.config.component(section, name)
            if getattr(config, "enabled", True):
                try:
                    built.append((f"{section}.{name}", _build(spec, config, ctx)))
                except Exception as exc:
                    raise StartupError(f"{section}.{name}: {exc}") from exc
    return built


def _build(spec: ComponentSpec, config: Any, ctx: Context) -> Component:
    """The component; on a shared store a partitioned stage becomes partition workers."""
    stream = spec.partitioned_stream
    if stream is None or ctx.store.backend != "nats":
        return spec.factory(config, ctx)
    nats = ctx.config.store.nats
    count = nats.partitions if stream in PARTITIONED_STREAMS else 1

    def build(sub: Context) -> StreamWorker:
        worker = spec.factory(config, sub)
        assert isinstance(worker, StreamWorker), f"{spec.name} is not a StreamWorker"
        return worker

    return PartitionedStage(spec.name, build, ctx, count=count, ttl=nats.partition_lease)


@contextlib.asynccontextmanager
async def _part(label: str) -> AsyncIterator[None]:
    """Turn a start-up failure into a StartupError that names the part that failed."""
    try:
        yield
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"{label}: {exc}") from exc


class Keiko:
    """The running process. ``async with Keiko(config) as k:`` serves until the block ends."""

    def __init__(self, config: KeikoConfig, config_path: str | Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.telemetry = Telemetry()
        self.store: Store | None = None
        self.ctx: Context | None = None
        self.api: ApiServer | None = None
        self.api_state: ApiState | None = None
        self._started: list[Component] = []
        self._stats_task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def api_url(self) -> str | None:
        """``http(s)://host:port`` of the API once started (None when it is disabled)."""
        return self.api.url if self.api else None

    async def __aenter__(self) -> Keiko:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Start everything in order; on any failure stop what started and raise."""
        began = time.monotonic()
        try:
            await self._start()
        except BaseException:
            await self.shutdown()
            raise
        self._log_summary(time.monotonic() - began)

    async def _start(self) -> None:
        self.store = open_store(self.config.store, read_only=False)
        async with _part(f"store ({self.config.store.backend})"):
            await self.store.start()
        self.ctx = Context(self.store, self.telemetry, self.config)
        for label, component in build_components(self.ctx):
            async with _part(label):
                await component.start()
            self._started.append(component)
        self.api_state = ApiState(self.store, self.telemetry, self.config.api)
        if self.config.api.enabled:
            app = build_app(self.api_state, self.ctx.routes)
            self.api = ApiServer(app, self.config.api.endpoint, self.config.api.tls)
            async with _part("API"):
                await self.api.start()
        self._stats_task = asyncio.create_task(self._refresh_stats(), name="store-stats")
        self.api_state.components_started = True

    def _log_summary(self, took: float) -> None:
        store = self.config.store
        where = (
            str(Path(store.embedded.path).resolve())
            if store.backend == "embedded"
            else ", ".join(store.nats.servers)
        )
        log.info("store: %s at %s", store.backend, where)
        found = listeners(self.config)
        for listener in found:
            url = self.api.url if listener.name == "api" and self.api else listener.url
            log.info("listening: %-22s %s", listener.name, url)
        for hint in otel_sdk_hints(found):
            log.info("point OpenTelemetry SDKs here: %s", hint)
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        log.info(
            "keiko ready in %.2fs (pid %d, %s event loop); SIGTERM stops, SIGHUP reloads",
            took,
            os.getpid(),
            loop,
        )

    async def _refresh_stats(self) -> None:
        assert self.store is not None
        failing = False
        while True:
            try:
                self.telemetry.store_snapshot.update(await self.store.stats())
                if failing:
                    log.info("store stats readable again")
                failing = False
            except Exception as exc:  # keep serving; say it once, not every 2 s
                if not failing:
                    log.warning("cannot read store stats for /metrics: %s", exc)
                failing = True
            await asyncio.sleep(STATS_INTERVAL)

    async def shutdown(self) -> None:
        """Stop the API, then components in reverse, then the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self.config.api.shutdown_grace
        if self.api_state is not None:
            self.api_state.stopping.set()  # /readyz says 503, live streams end
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self.api is not None:
            try:
                await self.api.shutdown(deadline)
            except Exception:
                log.exception("the API server failed to shut down cleanly")
        for component in reversed(self._started):
            try:
                await component.shutdown(deadline)
            except Exception:
                log.exception("component %s failed to shut down cleanly", component.name)
        if self.store is not None:
            await self.store.shutdown(deadline)

    def reload(self) -> bool:
        """Re-read the config file; apply what is safe at run time. False if it is invalid."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error(
                "config reload refused, keeping the running config",
                extra={"source": exc.source, "problems": exc.problems},
            )
            return False
        changes = diff(self.config, new)
        if self.store is not None:
            self.store.reconfigure(new.store)
        if self.api_state is not None:
            self.api_state.reconfigure(new.api)
        setup_logging(new.logging)
        if self.ctx is not None:
            self.ctx.config = new
            for reloader in self.ctx.reloaders:
                try:
                    reloader(new)
                except Exception:
                    log.exception("a component failed to apply the reloaded config")
        self.config = new
        # component_keys went to the components' reloaders: each applies what it can at run
        # time; the rest takes effect at the next restart.
        log.info(
            "config reloaded from %s",
            self.config_path or "defaults (and environment)",
            extra={
                "applied": changes.applied,
                "needs_restart": changes.restart,
                "component_keys": changes.components,
            },
        )
        return True


def _install_signals(keiko: Keiko, stop: asyncio.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT: stop (twice: exit now). SIGHUP: reload. Returns an uninstaller."""
    loop = asyncio.get_running_loop()

    def on_stop(sig: signal.Signals) -> None:
        if stop.is_set():
            log.error("%s again: exiting without waiting for shutdown", sig.name)
            logging.shutdown()
            os._exit(1)
        log.info(
            "%s: shutting down (at most %.1fs; send it again to exit at once)",
            sig.name,
            keiko.config.api.shutdown_grace,
        )
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(signal.SIGHUP, keiko.reload)

    def uninstall() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    return uninstall


async def run_keiko(
    config: KeikoConfig,
    *,
    config_path: str | Path | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
) -> None:
    """Run keiko until ``stop`` is set (or, with ``handle_signals``, SIGTERM/SIGINT).

    Raises what made the start fail (after stopping what had started), and TimeoutError
    when the shutdown overran ``api.shutdown_grace``.
    """
    stop = stop or asyncio.Event()
    keiko = Keiko(config, config_path)
    uninstall = _install_signals(keiko, stop) if handle_signals else None
    try:
        await keiko.start()
        await stop.wait()
        log.info("stopping")
        began = time.monotonic()
        await asyncio.wait_for(keiko.shutdown(), keiko.config.api.shutdown_grace + SHUTDOWN_SLACK)
        log.info("stopped in %.2fs", time.monotonic() - began)
    finally:
        if uninstall is not None:
            uninstall()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when installed (grpc.aio and uvicorn both run on it), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(config: KeikoConfig, config_path: str | Path | None = None) -> int:
    """`keiko run` after its config loaded: the exit status (0 stopped cleanly, 1 failed)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            runner.run(run_keiko(config, config_path=config_path, handle_signals=True))
        except TimeoutError:
            log.error(
                "shutdown did not finish within api.shutdown_grace=%ss; exiting",
                config.api.shutdown_grace,
            )
            return 1
        except StartupError as exc:
            log.error("keiko could not start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return 1
        except Exception:
            log.exception("keiko failed")
            return 1
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
    return 0
