"""Device helpers that make the same computation cheaper on a GPU: compiled functions with an eager
fallback, CUDA graphs of fixed-shape loop steps, host-to-device copies without a stream synchronization,
memory-probed batch sizes and compiled training models.

Nothing here changes what is computed. On a CPU every helper is the plain eager path (compilation is
opt-in there, CUDA graphs do not exist), so CPU results are those of plain PyTorch. On CUDA the
defaults are: compiled small element-wise functions (one fused kernel instead of a dozen launches) and
CUDA graphs of attack steps that have a fixed shape. Where compilation reorders floating-point
operations (a reduction such as an L2 norm), results may differ from eager ones in the last bits; the
tests state the tolerance. A compilation or capture that fails falls back to the eager path with one
warning, never an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args

import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.core.modules import frozen_model

log = logging.getLogger("nrflab.core.accel")

DeviceLike = Union[torch.device, str]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)

#: Evaluation batch size used for ``"auto"`` where no memory can be probed (CPU): the config's default.
DEFAULT_EVAL_BATCH_SIZE = 256


def synchronize(device: DeviceLike) -> None:
    """Wait for the device's queued work (a no-op on CPU): for timings only."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def default_accelerate(device: DeviceLike) -> bool:
    """Whether acceleration (compiled steps, CUDA graphs) is on by default: on CUDA only.

    On a CPU the kernels are compute-bound, compilation costs tens of seconds and buys little."""
    return torch.device(device).type == "cuda"


# -- compiled functions -----------------------------------------------------------------------------------


class CompiledFunction:
    """``fn`` compiled with ``torch.compile`` on its first call; the eager ``fn`` if compilation fails.

    The failure is logged once and the eager function is used from then on, so a missing compiler or
    an unsupported backend costs speed, never a run. ``eager`` is the reference the tests compare to.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        dynamic: bool | None = None,
        fullgraph: bool = True,
        mode: str | None = None,
        fallback: str = "using the eager version",
    ):
        self.eager = fn
        self.dynamic = dynamic
        self.fullgraph = fullgraph
        self.mode = mode
        self.fallback = fallback  # what the warning says happens instead
        self._compiled: Callable[..., Any] | None = None
        self.failed = False
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "compiled")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            if self._compiled is None:
                self._compiled = torch.compile(
                    self.eager, dynamic=self.dynamic, fullgraph=self.fullgraph, mode=self.mode
                )
            return self._compiled(*args, **kwargs)
        except Exception as exc:  # any compiler failure falls back to the same eager math
            self.failed = True
            log.warning(
                "torch.compile of %s failed (%s: %s); %s",
                self.__name__,
                type(exc).__name__,
                str(exc).splitlines()[0][:160] if str(exc) else "",
                self.fallback,
            )
            return self.eager(*args, **kwargs)


# -- host-to-device copies --------------------------------------------------------------------------------


def to_device_async(tensors: Sequence[torch.Tensor], device: DeviceLike) -> list[torch.Tensor]:
    """Small CPU tensors (random draws, indices) on ``device`` without waiting for the GPU.

    A plain ``.to("cuda")`` of pageable memory synchronizes the stream: inside a training step that is a
    host sync per step. Here the tensors go through pinned memory with ``non_blocking=True`` (the pinned
    block is kept until the copy has run). Tensors already on ``device`` and non-CUDA targets are
    moved with a plain ``.to``.
    """
    dev = torch.device(device)
    out = []
    for t in tensors:
        if dev.type == "cuda" and t.device.type == "cpu":
            out.append(t.pin_memory().to(dev, non_blocking=True))
        else:
            out.append(t.to(dev))
    return out


# -- CUDA graphs of loop steps ----------------------------------------------------------------------------

_GRAPH_POOLS: dict[int, Any] = {}


def shared_graph_pool(device: DeviceLike) -> Any:
    """One memory pool per GPU for every captured step graph.

    Safe because a step graph's inputs and outputs are static buffers allocated outside the pool and
    graphs are replayed one at a time on one stream: what one graph leaves in the pool is never read by
    another. Sharing keeps the memory of several cached graphs (attacks, batch shapes) to that of one.
    """
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    if index not in _GRAPH_POOLS:
        _GRAPH_POOLS[index] = torch.cuda.graph_pool_handle()
    return _GRAPH_POOLS[index]


class CapturedStep:
    """One CUDA graph of ``step()``, a function that reads and writes only static buffers in place.

    ``step`` runs ``warmup`` times on a side stream first (as CUDA graph capture requires; this also
    compiles anything compiled inside it), then once under capture. :meth:`replay` runs the captured
    kernels again in one launch. The caller fills the static buffers before replaying; the warm-up
    steps' effects on them are to be overwritten.
    """

    def __init__(self, step: Callable[[], None], device: DeviceLike, *, warmup: int = 2):
        dev = torch.device(device)
        if dev.type != "cuda":
            raise NrflabError("CUDA graphs need a CUDA device")
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=shared_graph_pool(dev)):
            step()

    def replay(self) -> None:
        self.graph.replay()


def module_signature(model: nn.Module) -> tuple[tuple[int, tuple[int, ...], torch.dtype], ...]:
    """Where a module's parameters and buffers live (addresses, shapes, dtypes): a captured graph of the
    module stays valid while this is unchanged (in-place updates such as optimizer steps are fine)."""
    return tuple((t.data_ptr(), tuple(t.shape), t.dtype) for t in (*model.parameters(), *model.buffers()))


# -- batch sizes that fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryProbe:
    """Peak memory of one forward + input-gradient pass: ``fixed + per_sample * batch`` bytes."""

    fixed: float
    per_sample: float
    free: int

    def largest_batch(self, fraction: float) -> int:
        budget = self.free * fraction - self.fixed
        return max(1, int(budget // max(self.per_sample, 1.0)))


_PROBES: dict[tuple[object, ...], MemoryProbe] = {}


def _input_gradient_peak(model: nn.Module, sample: torch.Tensor, batch: int) -> int:
    """Peak bytes allocated above the current level by a forward + backward to the input at ``batch``."""
    channels_last = sample.dim() == 4 and sample.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last and not sample.is_contiguous() else torch.contiguous_format
    x = sample[:1].repeat(batch, *([1] * (sample.dim() - 1))).contiguous(memory_format=fmt).requires_grad_(True)
    torch.cuda.synchronize(x.device)
    base = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    with torch.enable_grad():
        out = model(x)
        (grad,) = torch.autograd.grad(out.float().sum(), x)
    del out, grad
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device) - base


def probe_memory(model: nn.Module, sample: torch.Tensor, *, small: int = 32, large: int = 64) -> MemoryProbe:
    """Measure (once per model layout, input shape and device; cached) what a batch costs in memory.

    Two eager passes at ``small`` and ``large`` images give the fixed and the per-image part; the free
    memory counts what PyTorch's allocator holds but does not use.
    """
    dev = sample.device
    key = (
        tuple((tuple(p.shape), p.dtype) for p in model.parameters()),
        tuple(sample.shape[1:]),
        sample.dtype,
        sample.is_contiguous(memory_format=torch.channels_last),
        str(dev),
        model.training,
    )
    if key in _PROBES:
        return _PROBES[key]
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        a = _input_gradient_peak(model, sample, small)
        b = _input_gradient_peak(model, sample, large)
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
    per_sample = max((b - a) / (large - small), b / large / 2, 1.0)
    fixed = max(b - per_sample * large, 0.0)
    free, _ = torch.cuda.mem_get_info(dev)
    free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    probe = MemoryProbe(fixed=fixed, per_sample=per_sample, free=int(free))
    _PROBES[key] = probe
    log.info("memory probe on %s: %.1f KiB per image, %.0f MiB free", dev, per_sample / 1024, free / 2**20)
    return probe


def even_batches(total: int, largest: int) -> int:
    """The batch size that splits ``total`` into as few, and as equal, batches as ``largest`` allows
    (10,000 images at most 4,096 per batch: 3,334; fewer distinct shapes, fewer graphs)."""
    if total <= 0:
        return max(1, largest)
    largest = max(1, min(largest, total))
    return math.ceil(total / math.ceil(total / largest))


def resolve_batch_size(
    value: int | str, *, model: nn.Module, sample: torch.Tensor, total: int, fraction: float = 0.25, cap: int = 4096
) -> int:
    """An evaluation batch size: an integer is used as given (on every device); ``"auto"`` probes the
    GPU's memory once (cached) and takes the largest batch whose forward + input gradient uses at most
    ``fraction`` of the free memory (the eager passes and the CUDA graphs' own pool each hold one such
    batch, LIGS two gradients), at most ``cap`` images (beyond a few thousand images a batch is
    compute-bound: larger batches buy nothing), split evenly over ``total`` images. On a CPU
    ``"auto"`` is the default of 256.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise NrflabError(f"batch size must be >= 1, got {value}")
        return value
    if value != "auto":
        raise NrflabError(f"batch size must be an integer >= 1 or 'auto', got {value!r}")
    if not sample.is_cuda:
        return min(DEFAULT_EVAL_BATCH_SIZE, max(total, 1))
    with frozen_model(model, "eval"):
        probe = probe_memory(model, sample)
    return even_batches(total, min(cap, probe.largest_batch(fraction)))


# -- compiled training models ----------------------------------------------------------------------------


def resolve_compile_mode(value: bool | str | None) -> CompileMode | None:
    """``False``/``None``/``"none"``: no compilation; ``True``: torch.compile's default mode; or a mode name."""
    if value is None or value is False or value == "none":
        return None
    if value is True:
        return "default"
    if value in COMPILE_MODES:
        return value  # type: ignore[return-value]
    raise NrflabError(f"unknown compile mode {value!r}; choose none, {', '.join(COMPILE_MODES)}")


class CompiledTrainingModel(CompiledFunction):
    """A model compiled for its training steps, sharing the original's parameters and buffers.

    Only the training step calls it; evaluation, attacks and checkpoints use the original (eager, fp32).
    ``mark_step`` tells the CUDA-graph mode (``reduce-overhead``) that a new step begins, so outputs of
    the previous step may be overwritten. A failing compilation falls back to the eager model once.
    """

    def __init__(self, model: nn.Module, mode: CompileMode):
        super().__init__(model, fullgraph=False, mode=mode, fallback="training eagerly")
        self.__name__ = "the model"
        try:
            self._compiled = torch.compile(model, mode=mode)
        except Exception as exc:  # torch.compile unavailable here: train eagerly
            self.failed = True
            log.warning("torch.compile is unavailable (%s: %s); training eagerly", type(exc).__name__, exc)

    def mark_step(self) -> None:
        if self.mode == "reduce-overhead" and not self.failed:
            torch.compiler.cudagraph_mark_step_begin()


def training_model(model: nn.Module, compile_mode: bool | str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module the training step calls: ``model`` itself, or a :class:`CompiledTrainingModel`."""
    mode = resolve_compile_mode(compile_mode)
    return model if mode is None else CompiledTrainingModel(model, mode)


__all__ = ["CompileMode", "to_device_async"]
