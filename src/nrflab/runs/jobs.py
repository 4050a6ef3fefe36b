"""What the executor runs and how: the :class:`Job` contract, one :class:`JobResult` per job, and the
:class:`Execution` settings (workers, backend, Ray address, threads per run, ...) given once instead of being
threaded by hand through every caller's signature.

A job is keyed by what it writes (a run directory, a dataset directory, ``DIR#name`` for a result kept
beside one). ``check`` refuses, before anything runs, what would make the job fail (a directory holding
another recipe); ``done`` says the work is already on disk, so no worker is needed; ``run`` does it and
returns a value the caller reads back (it must pickle: it may come from another process or a Ray node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol

from nrflab.core.errors import NrflabError

BACKENDS = ("local", "ray")
Backend = Literal["local", "ray"]
Status = Literal["finished", "reused", "failed", "skipped"]


class Job(Protocol):
    """One unit of work the executor runs once: in this process, a worker process or a Ray task."""

    @property
    def key(self) -> str:
        """What the job writes (unique among the jobs of one execution)."""
        ...

    @property
    def label(self) -> str:
        """A short name for progress lines."""
        ...

    @property
    def after(self) -> tuple[str, ...]:
        """Keys of the jobs that must finish first."""
        ...

    @property
    def threads(self) -> Optional[int]:
        """Torch threads the job needs for its numbers (None: the execution's share)."""
        ...

    def check(self) -> None:
        """Raise a one-line ``NrflabError`` for what would make the job fail, before anything runs."""
        ...

    def done(self) -> bool:
        """Whether the job's result is already on disk (it then runs nowhere)."""
        ...

    def run(self, progress: bool) -> Any:
        """Do the work; the return value travels back to the caller."""
        ...


@dataclass(frozen=True)
class JobResult:
    """What happened to one job; ``value`` is what it returned (a run directory, sections, ...) and
    ``where`` the host, process and Ray node it ran on."""

    key: str
    status: Status
    seconds: float = 0.0
    error: Optional[str] = None
    value: Any = None
    where: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("finished", "reused")


@dataclass(frozen=True)
class Execution:
    """Where and how jobs run; the only place these options live.

    ``workers`` local processes (1: in this process) or ``backend="ray"`` (``ray_address``: a running
    cluster, default a local Ray instance; each job reserves ``cpus_per_run`` CPUs and ``gpus_per_run``
    GPUs). ``threads``: torch threads per job (default: all cores in this process, cores/workers in
    workers, the reserved CPUs on Ray); jobs give the same numbers for the same threads wherever they run.
    ``verbose``: every job's per-epoch lines (None: only for jobs run in this process).
    """

    workers: int = 1
    backend: Backend = "local"
    ray_address: Optional[str] = None
    cpus_per_run: float = 1
    gpus_per_run: float = 0
    threads: Optional[int] = None
    progress: bool = True
    verbose: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise NrflabError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise NrflabError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not (self.cpus_per_run > 0 and math.isfinite(self.cpus_per_run)) or not self.gpus_per_run >= 0:
            raise NrflabError("cpus per run must be > 0 and gpus per run >= 0")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise NrflabError(f"threads must be an integer >= 1, got {self.threads!r}")


def error_line(exc: BaseException) -> str:
    """One line for a failed job: an NrflabError's message, else the exception type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NrflabError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["Execution", "JobResult", "error_line"]
