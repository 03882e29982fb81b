"""`attribution run`: the `daily_refresh` job, executed in-process — the same code the UI runs.

The one way the command line builds (`attribution run`, `--full-refresh`, `demo`).
The Dagster instance (DAGSTER_HOME, storage DAGSTER_PG_URL: the one `attribution
dev` shows) and the resources are built from the command's settings and passed
in; a full refresh is run config of the dbt asset. Nothing is written to the
process environment.

Stopping it (SIGTERM, SIGINT, Ctrl-C): Dagster turns a signal that reaches a step
into an "interrupt", and a step with a retry policy — ingestion and the dbt build
have one — is then simply *retried*, so a `timeout 90 attribution run` ran to the
end. Here the job runs in a worker thread instead, where Dagster leaves signal
handling alone, and the main thread owns SIGTERM and SIGINT (`StopOnSignal`): it
marks the Dagster run canceling, interrupts dbt and any other child process
(SIGINT, which makes dbt cancel its queries; SIGKILL after a grace period),
cancels the queries this process tree runs on the platform database, and waits
a bounded time for the run to end as canceled. The command then exits with
128 + the signal number and one line saying it was stopped. A second signal
stops without waiting. A run whose process was killed outright (SIGKILL) is
marked failed by the next `attribution run` (`fail_abandoned_runs`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO, TypeVar
from urllib.parse import urlsplit

import dagster as dg
import psutil
import psycopg
from dagster._core.instance.ref import InstanceRef

from orchestration.instance import instance_ref, open_instance
from platform_core.settings import Settings

T = TypeVar("T")

JOB = "daily_refresh"
# The op of every dbt asset (orchestration/defs/attribution/dbt_assets.py).
DBT_OP = "dbt_models"


@dataclass
class RefreshOutcome:
    success: bool
    run_id: str
    # "<asset> · <check>", then what the check says (whose rows fail, for a data test).
    failed_errors: list[str] = field(default_factory=list)
    failed_warnings: list[str] = field(default_factory=list)
    step_failures: list[str] = field(default_factory=list)
    materialized: int = 0  # asset materializations of the run
    checks_evaluated: int = 0

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_errors


def run_config(full_refresh: bool) -> dict[str, object]:
    """`daily_refresh`'s run config: a full refresh is the dbt op's config (so the run
    shows it in Dagster), nothing otherwise."""
    if not full_refresh:
        return {}
    return {"ops": {DBT_OP: {"config": {"full_refresh": True}}}}


# Runs executed in-process by `attribution run` carry who executes them, so the next
# `attribution run` can tell a run whose process was killed from one still going.
HOST_TAG = "attribution/host"
PID_TAG = "attribution/pid"
STARTED_TAG = "attribution/process_started"
# One value per `attribution run`: lets the stopping thread find the run it executes.
INVOCATION_TAG = "attribution/invocation"
UNFINISHED = (
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def _process_tags() -> dict[str, str]:
    me = psutil.Process()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(me.pid),
        STARTED_TAG: f"{me.create_time():.2f}",
    }


def _process_alive(tags: dict[str, str]) -> bool:
    try:
        process = psutil.Process(int(tags[PID_TAG]))
        return f"{process.create_time():.2f}" == tags[STARTED_TAG]
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs of this host whose process is gone (killed).

    Such a run stays STARTED forever and keeps its slot in the pool
    `attribution_database` (limit 1), so every later run would wait for it.
    Returns the run ids released.
    """
    released = []
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=list(UNFINISHED), tags={HOST_TAG: socket.gethostname()})
    )
    for run in runs:
        if _process_alive(run.tags):
            continue
        instance.report_run_failed(
            run,
            f"the process executing this run (pid {run.tags.get(PID_TAG)}) is gone;"
            " marked failed by the next `attribution run`",
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def run_daily_refresh(
    settings: Settings, platform_url: str, full_refresh: bool = False
) -> RefreshOutcome:
    """Execute `daily_refresh` on the instance and resources of `settings` (the database
    at `platform_url`); a SIGTERM or SIGINT meanwhile raises `RunStopped`."""
    return run_job(settings, platform_url, JOB, run_config(full_refresh))


def run_job(
    settings: Settings,
    platform_url: str,
    job_name: str,
    config: dict[str, object],
    needs_landing: bool = True,
) -> RefreshOutcome:
    """Execute the job `job_name` with run config `config`, in-process, as
    `run_daily_refresh` does (`attribution commissions close` runs its job so)."""
    from orchestration.resources import configured_resources

    resources = configured_resources(settings, platform_url, needs_landing)
    ref = instance_ref(settings, platform_url)
    token = uuid.uuid4().hex
    hooks = _Daily(token, ref)
    stopper = StopOnSignal(platform_url, hooks)
    try:
        return stopper.run(lambda: _execute(ref, resources, job_name, config, token, stopper))
    finally:
        hooks.close()
        _end_leftover_plumbing()


def _end_leftover_plumbing() -> None:
    """Dagster mirrors captured output with `tail -F` processes and ends them with
    SIGTERM when the run ends. Started from a background job (`cmd &` in a script,
    where SIGTERM and SIGINT come ignored), the tails inherit the ignored signals,
    outlive the run, and, holding its stdout and stderr, keep whoever reads
    `attribution run`'s output waiting for end of file. Whatever is left now goes."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                command = child.cmdline()
                if command and (
                    os.path.basename(command[0]) == "tail"
                    or "watch_orphans.py" in " ".join(command)
                ):
                    child.kill()  # SIGKILL: SIGTERM may be ignored (above)


def _execute(
    ref: InstanceRef,
    resources: dict[str, object],
    job_name: str,
    config: dict[str, object],
    token: str,
    stopper: StopOnSignal,
) -> RefreshOutcome:
    from orchestration.definitions import build_definitions

    definitions = build_definitions(resources)
    with open_instance(ref) as instance, pooled_storage(instance):
        for run_id in fail_abandoned_runs(instance):
            print(f"run {run_id} was abandoned by a killed process: marked failed")
        stopper.checkpoint()  # stopped while the definitions loaded: start no run
        result = definitions.resolve_job_def(job_name).execute_in_process(
            run_config=config,
            instance=instance,
            raise_on_error=False,
            tags={**_process_tags(), INVOCATION_TAG: token},
        )
    outcome = RefreshOutcome(result.success, result.run_id)
    outcome.materialized = len(result.get_asset_materialization_events())
    for evaluation in result.get_asset_check_evaluations():
        outcome.checks_evaluated += 1
        if evaluation.passed:
            continue
        label = f"{evaluation.asset_key.to_user_string()} · {evaluation.check_name}"
        if evaluation.description:
            label += f": {condense(evaluation.description, limit=300)}"
        if evaluation.severity == dg.AssetCheckSeverity.ERROR:
            outcome.failed_errors.append(label)
        else:
            outcome.failed_warnings.append(label)
    for event in result.all_events:
        if event.is_step_failure:
            outcome.step_failures.append(
                f"{event.step_key}: {condense(event.event_specific_data.error.message)}"
            )
    return outcome


@contextlib.contextmanager
def pooled_storage(instance: dg.DagsterInstance) -> Iterator[None]:
    """Keep Dagster's PostgreSQL storage connections open for one in-process run.

    dagster-postgres opens a new connection for every read and write (NullPool, so
    that long-lived processes hold none): one daily_refresh stores about 500 events
    and opened about 1,250 connections, each a SCRAM handshake and a new server
    process — 25 s of a 117-s demo on a loaded 2-core box. For the length of the run
    each storage keeps one connection (more only while threads overlap), pinged
    before each use, so a restarted server costs a reconnect, not a failed write.
    Storage that is not dagster-postgres's is left as it is."""
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )
    from dagster_postgres.utils import create_pg_engine

    swapped = []
    postgres = (PostgresRunStorage, PostgresEventLogStorage, PostgresScheduleStorage)
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        if not isinstance(storage, postgres):
            continue
        engine = storage._engine  # noqa: SLF001
        pooled = create_pg_engine(
            engine.url,  # the URL object: keeps the password str() would mask
            getattr(storage, "_token_provider", None),
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=8,
            pool_pre_ping=True,
        )
        storage._engine = pooled  # noqa: SLF001 - dagster-postgres has no pool setting
        swapped.append((storage, engine, pooled))
    try:
        yield
    finally:
        for storage, engine, pooled in swapped:
            storage._engine = engine  # noqa: SLF001
            pooled.dispose()  # the storages' dispose() leaves engines alone


def condense(message: str, limit: int = 600) -> str:
    """A step's error as one line: no exception class prefix, no boilerplate, bounded."""
    text = " ".join(message.split())
    for prefix in ("dagster._core.definitions.events.Failure: ", "Failure: "):
        text = text.removeprefix(prefix)
    text = text.split(" Check the stdout in the Dagster compute logs")[0] + (
        " — " + text.split("Errors parsed from dbt logs:")[1].strip()
        if "Errors parsed from dbt logs:" in text
        else ""
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunStopped(Exception):
    """`attribution run` was stopped by a signal; `finish()` reports it and gives the exit code."""

    def __init__(self, message: str, exit_code: int, stream: TextIO, work_alive: bool) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stream = stream
        self.work_alive = work_alive

    def finish(self) -> int:
        """Print the one line on the terminal's stderr (Dagster may still be capturing
        fd 2 when the work did not end) and return the exit code; exit at once
        when the work is still running, so nothing of it goes on."""
        print(f"error: {self}", file=self.stream, flush=True)
        if self.work_alive:
            os._exit(self.exit_code)
        return self.exit_code


class _StopRequested(Exception):
    """Raised at a checkpoint of the work once a stop was asked for."""


class StopHooks:
    """What a stop does besides stopping processes and queries (nothing, here)."""

    def stopping(self, signal_name: str) -> None:
        """Called on every round of the stop, from the main thread."""

    def stalled(self) -> bool:
        """True when the work will not end by itself soon: stop waiting for it."""
        return False

    def stopped(self, signal_name: str) -> str:
        """The stop is over: record it; returns what to say about the work."""
        return ""


# Dagster's helpers that copy captured output to the terminal, and Python's
# semaphore tracker: they end with this process; the rest (dbt) are work.
_PLUMBING = ("watch_orphans.py", "multiprocessing.resource_tracker")


def _is_plumbing(process: psutil.Process) -> bool:
    try:
        command = process.cmdline()
    except psutil.Error:
        return True
    return bool(command) and (
        os.path.basename(command[0]) == "tail" or any(p in " ".join(command) for p in _PLUMBING)
    )


class StopOnSignal:
    """Run work in a worker thread while the main thread answers SIGTERM and SIGINT.

    On the first signal, in rounds until the work ends: the hooks' `stopping`
    (e.g. mark the Dagster run canceling), SIGINT to every child process that is
    work (dbt cancels its queries and exits), SIGKILL to those still there after
    `grace` seconds, and a cancel of every statement this process tree runs on
    the platform database — so a step starting meanwhile stops too. The work gets
    `patience` seconds to end; a second signal, or hooks saying the work is
    stalled (waiting to retry a step), end the wait at once. Then `RunStopped`.
    """

    grace = 5.0
    patience = 15.0
    tick = 0.2

    def __init__(self, platform_url: str, hooks: StopHooks | None = None) -> None:
        self.url = platform_url
        self.hooks = hooks or StopHooks()
        try:
            self._port: int | None = urlsplit(platform_url).port or 5432
        except ValueError:
            self._port = None  # then no statement is cancelled; processes still stop
        self.signals: list[int] = []
        self._stopping_since: float | None = None
        self._interrupted: dict[int, float] = {}
        self._endpoints: set[tuple[str, int]] = set()
        self._monitor: psycopg.Connection | None = None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signals[0]).name if self.signals else ""

    def checkpoint(self) -> None:
        """For the work: stop here when a stop was asked for."""
        if self.signals:
            raise _StopRequested

    def run(self, work: Callable[[], T]) -> T:
        if threading.current_thread() is not threading.main_thread():
            return work()  # only the main thread receives signals: nothing to answer
        outcome: list[T] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                outcome.append(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                failure.append(exc)

        terminal = os.fdopen(os.dup(2), "w", buffering=1)
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN  # e.g. SIGINT of a `cmd &` job
        }
        worker = threading.Thread(target=target, name="attribution-run", daemon=True)
        try:
            worker.start()
            while worker.is_alive():
                worker.join(self.tick)
                if not self.signals:
                    continue
                if self._stopping_since is None:
                    self._stopping_since = time.monotonic()
                self._round()
                waited = time.monotonic() - self._stopping_since
                if len(self.signals) > 1 or waited > self.patience or self._stalled():
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not self.signals:
            terminal.close()
            if failure:
                raise failure[0]
            return outcome[0]
        if self._stopping_since is None:  # the signal came as the work ended
            self._stopping_since = time.monotonic()
            self._round()
        raise self._stopped(worker, terminal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _stalled(self) -> bool:
        try:
            return self.hooks.stalled()
        except Exception:  # noqa: BLE001 - cannot tell: keep waiting, within the patience
            return False

    def _round(self) -> None:
        """Tell the hooks, interrupt work processes, kill those past the grace, cancel
        the statements."""
        with contextlib.suppress(Exception):  # the stop goes on regardless
            self.hooks.stopping(self.signal_name)
        now = time.monotonic()
        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                self._remember_endpoints(child)
                if _is_plumbing(child):
                    continue
                if child.pid not in self._interrupted:
                    self._interrupted[child.pid] = now
                    child.send_signal(signal.SIGINT)
                elif now - self._interrupted[child.pid] > self.grace:
                    child.kill()
        with contextlib.suppress(psutil.Error):
            self._remember_endpoints(psutil.Process())
        self._cancel_statements()

    def _remember_endpoints(self, process: psutil.Process) -> None:
        for conn in process.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == self._port and conn.laddr:
                self._endpoints.add((conn.laddr.ip, conn.laddr.port))

    def _cancel_statements(self) -> None:
        """Cancel what this process tree's sessions run on the platform database (the
        sessions of a killed dbt included; this connection aside). Dagster's storage
        is another database: its sessions are left alone."""
        if not self._endpoints:
            return
        try:
            if self._monitor is None or self._monitor.closed:
                self._monitor = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=5,
                    application_name="attribution run (stopping)",
                )  # fmt: skip
            hosts, ports = zip(*sorted(self._endpoints), strict=True)
            self._monitor.execute(
                "select pg_cancel_backend(a.pid) from pg_stat_activity as a"
                " join unnest(%s::text[], %s::int[]) as e(host, port)"
                " on host(a.client_addr) = e.host and a.client_port = e.port"
                " where a.datname = current_database() and a.pid <> pg_backend_pid()"
                " and a.state = 'active'",
                [list(hosts), list(ports)],
            )
        except psycopg.Error:
            pass  # the server may be gone too: the processes are stopped regardless

    def _stopped(self, worker: threading.Thread, terminal: TextIO) -> RunStopped:
        work_alive = worker.is_alive()
        # What is left (the work did not end in time: all of it) goes now.
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children(recursive=True):
                if work_alive or not _is_plumbing(child):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
        self._cancel_statements()
        if self._monitor is not None:
            self._monitor.close()
        try:
            detail = self.hooks.stopped(self.signal_name)
        except Exception as exc:  # noqa: BLE001 - the stop is reported regardless
            detail = f"could not record the stop: {exc}"
        seconds = time.monotonic() - (self._stopping_since or time.monotonic())
        message = (
            f"stopped by {self.signal_name} (its processes and queries stopped within"
            f" {seconds:.1f} s)" + (f": {detail}" if detail else "")
        )
        return RunStopped(message, 128 + self.signals[0], terminal, work_alive)


_STATUS_WORDS = {
    dg.DagsterRunStatus.CANCELED: "canceled",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.SUCCESS: "succeeded (it had finished its steps)",
}


class _Daily(StopHooks):
    """The Dagster run of one `attribution run`, as the stopping main thread sees it."""

    def __init__(self, token: str, ref: InstanceRef) -> None:
        self.token = token
        self.ref = ref
        self._instance: dg.DagsterInstance | None = None
        self._since: float | None = None  # wall clock, as Dagster's event timestamps
        self._run_id: str | None = None
        self._canceling = False

    def _find(self) -> dg.DagsterRun | None:
        if self._instance is None:
            self._instance = open_instance(self.ref)
        runs = self._instance.get_runs(filters=dg.RunsFilter(tags={INVOCATION_TAG: self.token}))
        if runs:
            self._run_id = runs[0].run_id
        return runs[0] if runs else None

    def stopping(self, signal_name: str) -> None:
        """Mark the run canceling once it exists: when it ends, Dagster records it
        as canceled rather than failed."""
        if self._since is None:
            self._since = time.time()
        if self._canceling:
            return
        run = self._find()
        if run is None:
            return
        assert self._instance is not None
        if run.status in UNFINISHED and run.status != dg.DagsterRunStatus.CANCELING:
            self._instance.report_run_canceling(
                run, message=f"{signal_name} received: `attribution run` is stopping this run"
            )
        self._canceling = True

    def stalled(self) -> bool:
        """No run a second after the stop (the definitions were loading: nothing to
        wait for), or a step set to be retried since (Dagster retries a step its
        processes were stopped under: waiting would only start it again)."""
        since = self._since or time.time()
        if self._run_id is None:
            return time.time() - since > 1.0
        assert self._instance is not None
        retries = self._instance.get_records_for_run(
            self._run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY, ascending=False, limit=1
        ).records
        return bool(retries) and retries[0].timestamp >= since

    def stopped(self, signal_name: str) -> str:
        """Mark the run canceled when it did not end by itself, free its pool slot."""
        run = self._find()
        if run is None:
            return "no Dagster run had started"
        assert self._instance is not None
        if run.status in UNFINISHED:
            self._instance.report_run_canceled(
                run, message=f"{signal_name} received: `attribution run` stopped this run"
            )
            self._instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            run = self._find() or run
        word = _STATUS_WORDS.get(run.status, run.status.value.lower())
        return f"Dagster run {run.run_id} of daily_refresh {word}"

    def close(self) -> None:
        if self._instance is not None:
            self._instance.dispose()
