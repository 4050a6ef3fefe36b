"""Feature-dataset builder throughput vs the source model's forward+backward-to-input limit.

Measured side by side in one run: the builder (``nrflab.features.build_dataset``, end to end: data, PGD,
quantization, sanity numbers, shard writes) in images x steps per second, and a plain loop of forward +
``torch.autograd.grad`` with respect to the input on the same batch. Target: builder >= 0.9x the limit.
Each builder runs with the device's defaults and, where this nrflab offers them, with its PGD variants
(``eager``: no compilation, no graphs; ``graphs``: CUDA graphs also for the inversions' custom loss).

    python benchmarks/builder_speed.py [--arch smallcnn --width 0.5 --images 512 --steps 20 --batch-size 256]
    python benchmarks/builder_speed.py --device cuda --steps 100 --images 4000 --batch-size 1000
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from nrflab.attacks import PGD
from nrflab.core.validation import resolve_device
from nrflab.data import load_dataset
from nrflab.features import build_dataset
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model

VARIANT_ARGS = {
    "default": {},
    "eager": dict(accelerate=False, cuda_graphs=False),
    "graphs": dict(accelerate=True, cuda_graphs=True),
}


@contextlib.contextmanager
def pgd_defaults(**defaults: Any) -> Iterator[None]:
    """Every PGD built inside the block (the builders build their own) gets these keyword defaults."""
    if not defaults:
        yield
        return
    original = PGD.__init__

    def patched(self: PGD, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**defaults, **kwargs})

    PGD.__init__ = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        PGD.__init__ = original  # type: ignore[method-assign]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def limit_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batches: int) -> float:
    """Images x steps per second of forward + input gradient, nothing else."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _sync(x.device)
    t0 = time.perf_counter()
    for _ in range(batches * steps):
        xi = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xi), y, reduction="sum")
        torch.autograd.grad(loss, xi)
    _sync(x.device)
    return x.shape[0] * batches * steps / (time.perf_counter() - t0)


def builder_rate(
    kind: str,
    ckpt: Path,
    dataset: str,
    images: int,
    steps: int,
    batch_size: int,
    device: str,
    work: Path,
    variant: str = "default",
) -> float:
    with pgd_defaults(**VARIANT_ARGS[variant]):
        _sync(torch.device(device))
        t0 = time.perf_counter()
        build_dataset(
            kind,
            ckpt,
            dataset,
            work / kind,
            steps=steps,
            limit=images,
            batch_size=batch_size,
            shard_size=images,
            device=device,
            overwrite=True,
            progress=False,
        )
        _sync(torch.device(device))
    return images * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--norm", default="bn")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    bundle = load_dataset(args.dataset)
    model = (
        create_model(
            args.arch,
            args.norm,
            bundle.num_classes,
            bundle.in_channels,
            width=args.width,
            mean=bundle.mean,
            std=bundle.std,
            input_shape=bundle.input_shape,
            seed=0,
        )
        .to(dev)
        .eval()
    )
    x, y = bundle.train.tensors()
    x, y = x[: args.batch_size].to(dev), y[: args.batch_size].to(dev)
    batches = -(-args.images // args.batch_size)
    variants = ["default"]
    if "accelerate" in inspect.signature(PGD).parameters:
        variants += ["eager"] + (["graphs"] if dev.type == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = save_model(model, work / "source.safetensors")
        limit_rate(model, x, y, 2, 1)  # warm-up
        for kind in ("d_rand", "d_nr"):  # warm-up of every variant (compilation, capture, first allocations)
            for v in variants:
                builder_rate(
                    kind, ckpt, args.dataset, min(args.images, args.batch_size), 2, args.batch_size, str(dev), work, v
                )
        rows = []
        for kind in ("d_rand", "d_det", "d_nr"):
            lim = limit_rate(model, x, y, args.steps, batches)
            got = {
                v: builder_rate(kind, ckpt, args.dataset, args.images, args.steps, args.batch_size, str(dev), work, v)
                for v in variants
            }
            rows.append((kind, got, lim))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(
        f"{name}, torch {torch.__version__}, {args.arch} width {args.width} {args.norm}, "
        f"{args.images} images x {args.steps} steps, batch {args.batch_size} (images x steps / s)"
    )
    print(
        f"{'builder':<10} "
        + " ".join(f"{v:>10}" for v in variants)
        + f" {'limit':>10} "
        + " ".join(f"{v + '/limit':>14}" for v in variants)
    )
    for kind, got, lim in rows:
        print(
            f"{kind:<10} "
            + " ".join(f"{got[v]:>10.0f}" for v in variants)
            + f" {lim:>10.0f} "
            + " ".join(f"{got[v] / lim:>14.2f}" for v in variants)
        )
    print(
        "default = the device's defaults (CPU: eager; CUDA: compiled update, graphs for the built-in loss); "
        "d_nr inverts the representation, so its model pass skips the linear head; the limit is the full model"
    )


if __name__ == "__main__":
    main()
