"""The one executor: :func:`execute` runs jobs once each, dependencies first, in this process, in local
worker processes or as Ray tasks, and returns one :class:`~nrflab.runs.jobs.JobResult` per job.

Sweeps, experiment chains and every planted run go through it, so ``--workers`` and ``--backend ray``
reach every run. Workers and Ray tasks call the same function, :func:`run_job`, and each limits torch to its
share of the CPU threads (or to the threads a job asks for), so a job gives the same numbers in this
process, in a local worker and on a cluster node. A failed job's dependents are skipped; independent jobs
go on. On Ray every node must see the output directories at the same path.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional

import torch

from nrflab.core.errors import NrflabError
from nrflab.core.logs import get_logger, scoped
from nrflab.runs.jobs import Execution, Job, JobResult, error_line

log = get_logger("executor")

Report = Callable[[JobResult], None]


# ---------------------------------------------------------------------------------------------
# One job, in any process


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Run with ``n`` torch threads (None: unchanged), restoring the caller's setting afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_job(job: Job, *, threads: Optional[int] = None, progress: bool = False, verbose: bool = False) -> JobResult:
    """Run one job (or find it done) on ``job.threads`` or ``threads`` torch threads; never raises for a
    failed job: its one-line error is returned."""
    t0 = time.perf_counter()
    where = worker_name()
    try:
        if job.done():
            return JobResult(job.key, "reused", 0.0, None, job.key, where)
        with torch_threads(job.threads or threads), scoped(prefix=f"[{job.label}] ", quiet=not verbose):
            value = job.run(progress)
        return JobResult(job.key, "finished", time.perf_counter() - t0, None, value, where)
    except Exception as exc:  # a failed job is recorded; independent ones go on
        return JobResult(job.key, "failed", time.perf_counter() - t0, error_line(exc), None, where)


def worker_name() -> str:
    """Where a job runs: host and process, and the Ray node when it runs in a Ray worker."""
    import socket
    import sys

    name = f"{socket.gethostname()} pid {os.getpid()}"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            name += f" ray node {ray.get_runtime_context().get_node_id()[:12]}"
        except Exception:  # pragma: no cover - outside a task
            pass
    return name


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.setdefault("MPLBACKEND", "Agg")


# ---------------------------------------------------------------------------------------------
# Order


def topological_order(jobs: Sequence[Job]) -> list[Job]:
    """Jobs in an order that respects ``after`` (stable; unknown keys ignored); a cycle is an error."""
    by_key = {j.key: j for j in jobs}
    order: list[Job] = []
    state: dict[str, int] = {}

    def visit(key: str, stack: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise NrflabError(f"tasks depend on each other in a cycle: {' -> '.join(stack + (key,))}")
        state[key] = 1
        for dep in by_key[key].after:
            if dep in by_key:
                visit(dep, stack + (key,))
        state[key] = 2
        order.append(by_key[key])

    for j in jobs:
        visit(j.key, ())
    return order


def _short_path(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[-3:]) if len(parts) > 3 else path


def _blocked(job: Job, results: Mapping[str, JobResult]) -> Optional[str]:
    for dep in job.after:
        r = results.get(dep)
        if r is not None and not r.ok:
            return f"needs {_short_path(dep)}, which {'failed' if r.status == 'failed' else 'was skipped'}"
    return None


def _schedule(pending: list[Job], results: dict[str, JobResult], record: Report, submit: Callable[[Job], None]) -> None:
    """Submit every pending job whose dependencies are done (skipping those with a failed dependency)."""
    progressed = True
    while progressed:
        progressed = False
        for j in list(pending):
            if not all(dep in results for dep in j.after):
                continue
            pending.remove(j)
            blocked = _blocked(j, results)
            if blocked:
                record(JobResult(j.key, "skipped", error=blocked))
                progressed = True
            elif j.done():  # nothing to do: no worker needed
                record(JobResult(j.key, "reused", 0.0, None, j.key))
                progressed = True
            else:
                submit(j)


# ---------------------------------------------------------------------------------------------
# Execution


def execute(
    jobs: Sequence[Job], execution: Execution = Execution(), *, report: Report | None = None
) -> dict[str, JobResult]:
    """Run every job once, dependencies first (each job's ``check`` before the first runs); independent
    jobs in parallel (``execution.workers`` local processes, or Ray tasks). Returns results by key.

    ``report`` is called with each result as it arrives (default: one progress line in the log)."""
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise NrflabError(f"job {next(k for k in keys if keys.count(k) > 1)} is planned twice")
    ordered = topological_order(jobs)
    for j in ordered:
        j.check()
    results: dict[str, JobResult] = {}
    labels = {j.key: j.label for j in ordered}

    def record(result: JobResult) -> None:
        results[result.key] = result
        if report is not None:
            report(result)
        else:
            _log_line(result, labels[result.key], len(results), len(ordered))

    if execution.backend == "ray":
        _run_ray(list(ordered), record, results, execution)
    elif execution.workers == 1:
        verbose = True if execution.verbose is None else execution.verbose
        for j in ordered:
            blocked = _blocked(j, results)
            if blocked:
                record(JobResult(j.key, "skipped", error=blocked))
                continue
            record(run_job(j, threads=execution.threads, progress=execution.progress, verbose=verbose))
    else:
        _run_pool(list(ordered), record, results, execution)
    return results


def _log_line(result: JobResult, label: str, n: int, total: int) -> None:
    word = {
        "finished": f"finished in {result.seconds:.1f} s",
        "reused": "already finished",
        "failed": f"FAILED: {result.error}",
        "skipped": f"skipped: {result.error}",
    }[result.status]
    (log.warning if result.status in ("failed", "skipped") else log.info)(f"[{n}/{total}] {label}: {word}")


def _run_pool(pending: list[Job], record: Report, results: dict[str, JobResult], execution: Execution) -> None:
    """``execution.workers`` spawned processes sharing the CPU cores."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    per_worker = execution.threads or max(1, (os.cpu_count() or 1) // execution.workers)
    verbose = bool(execution.verbose)
    running: dict[Future[JobResult], Job] = {}
    with ProcessPoolExecutor(
        max_workers=execution.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(per_worker,),
    ) as pool:

        def submit(j: Job) -> None:
            running[pool.submit(run_job, j, threads=per_worker, progress=False, verbose=verbose)] = j

        _schedule(pending, results, record, submit)
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                try:
                    record(fut.result())
                except Exception as exc:  # the worker process died
                    record(JobResult(job.key, "failed", error=f"worker died: {type(exc).__name__}: {exc}"))
            _schedule(pending, results, record, submit)


#: How often Ray runs a task again after its node or worker process died (a lost node does not lose the chain).
RAY_TASK_RETRIES = 3


#: Seconds to wait for a Ray cluster's address to answer before refusing it.
CONNECT_TIMEOUT = 10.0


def check_reachable(execution: Execution, *, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse, in one line and before anything runs, a ``--ray-address`` that does not answer within
    ``timeout`` seconds (Ray itself retries for minutes). ``auto`` and a local Ray instance are left to Ray."""
    address = execution.ray_address
    if execution.backend != "ray" or not address or address.strip() in ("auto", "local"):
        return
    text = address.strip().split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NrflabError(f"--ray-address {address!r}: give HOST:PORT (e.g. 10.0.0.1:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise NrflabError(
            f"--ray-address {address}: cannot connect within {timeout:g} s ({reason}); start the cluster "
            "(ray start --head) or check the address"
        ) from None


def _run_ray(pending: list[Job], record: Report, results: dict[str, JobResult], execution: Execution) -> None:
    """One Ray task per job on the cluster at ``execution.ray_address`` (or a local Ray instance, or the one
    already initialized by the caller)."""
    try:
        import ray
    except ImportError:
        raise NrflabError("the ray backend needs Ray: pip install ray (or nrflab[cluster])") from None
    verbose = bool(execution.verbose)
    started = not ray.is_initialized()
    if started and execution.ray_address:
        ray.init(address=execution.ray_address, log_to_driver=verbose)
    elif started:
        ray.init(include_dashboard=False, log_to_driver=verbose)
    try:
        # A task whose node or worker process dies is run again elsewhere (max_retries); the run it was writing
        # resumes from its last checkpoint, which the training run checks rather than trusts. An error the job
        # itself raises is not retried (retry_exceptions=False): it would fail the same way again.
        remote: Any = ray.remote(
            num_cpus=execution.cpus_per_run,
            num_gpus=execution.gpus_per_run,
            max_retries=RAY_TASK_RETRIES,
            retry_exceptions=False,
        )(run_job)
        threads = execution.threads or max(1, int(math.floor(execution.cpus_per_run)))
        running: dict[Any, Job] = {}

        def submit(j: Job) -> None:
            running[remote.remote(j, threads=threads, progress=False, verbose=verbose)] = j

        _schedule(pending, results, record, submit)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    record(ray.get(ref))
                except Exception as exc:  # the task's worker died
                    record(JobResult(job.key, "failed", error=f"ray task failed: {type(exc).__name__}"))
            _schedule(pending, results, record, submit)
    finally:
        if started:
            ray.shutdown()


__all__ = ["check_reachable", "execute", "topological_order", "torch_threads"]
