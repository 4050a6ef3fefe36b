"""PGD throughput of nrflab next to torchattacks and next to the model's own limit, measured side by side.

For each model and norm (Linf, L2; no random start) it times, interleaved in one process on the same model,
inputs, batch size and number of steps: ``nrflab.attacks.PGD``, ``torchattacks.PGD``/``PGDL2``, and the limit:
a plain loop of forward + ``torch.autograd.grad`` with respect to the input (parameters frozen), one pass per
step and nothing else. Each runs once to warm up, then ``--repeats`` times; the median is reported.

    python benchmarks/attack_speed.py --threads 2 --batch-size 128 --steps 10 --repeats 5 [--full-resnet18]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.attacks import PGD
from nrflab.models import create_model

SETTINGS = {"linf": (8 / 255, 2 / 255), "l2": (0.5, 0.1)}  # (eps, step size)


@dataclass
class Case:
    name: str
    model: nn.Module
    shape: tuple[int, int, int]


def cases(full_resnet18: bool, device: torch.device) -> list[Case]:
    out = [
        Case("smallcnn w1 bn 1x28x28", create_model("smallcnn", "bn", 10, 1, width=1.0, mean=(0.1307,), std=(0.3081,), seed=0), (1, 28, 28)),
        Case("resnet18 w0.25 bn 3x32x32", create_model("resnet18", "bn", 10, 3, width=0.25, seed=0), (3, 32, 32)),
    ]
    if full_resnet18:
        out.append(Case("resnet18 w1 bn 3x32x32", create_model("resnet18", "bn", 10, 3, width=1.0, seed=0), (3, 32, 32)))
    for c in out:
        c.model.to(device).eval()
    return out


def limit_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """The floor for any gradient attack: ``steps`` forward + input-gradient passes, parameters frozen."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            z = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return grad


def runners(model: nn.Module, norm: str, steps: int) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    import torchattacks

    eps, step = SETTINGS[norm]
    ta_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    return {
        "nrflab": PGD(model, norm, eps=eps, step_size=step, steps=steps),
        "torchattacks": ta_cls(model, eps=eps, alpha=step, steps=steps, random_start=False),
        "limit": lambda x, y: limit_loop(model, x, y, steps),
    }


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(case: Case, norm: str, batch_size: int, steps: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median images/s of each runner, and the median of the paired (same-repeat) speed ratios.

    The runners are interleaved, in a rotating order, so that load from other processes hits all of them
    alike; ratios taken within one repeat cancel most of what is left of that noise.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *case.shape, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    run = runners(case.model, norm, steps)
    for fn in run.values():  # warm-up
        fn(x, y)
    names = list(run)
    times: dict[str, list[float]] = {k: [] for k in run}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(timed(lambda: run[name](x, y), device))
    out = {name: batch_size / statistics.median(ts) for name, ts in times.items()}
    out["vs_ta"] = statistics.median(t / n for t, n in zip(times["torchattacks"], times["nrflab"]))
    out["vs_limit"] = statistics.median(t / n for t, n in zip(times["limit"], times["nrflab"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-resnet18", action="store_true", help="also time ResNet-18 at full width (slow on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"PGD, {args.steps} steps, batch {args.batch_size}, {args.threads} thread(s), {device}, torch {torch.__version__};"
          f" median of {args.repeats} (images/s)")
    header = f"{'model':<27} {'norm':<5} {'nrflab':>9} {'torchattacks':>13} {'limit':>9} {'nrflab/ta':>10} {'nrflab/limit':>13}"
    print(header)
    print("-" * len(header))
    for case in cases(args.full_resnet18, device):
        for norm in ("linf", "l2"):
            r = measure(case, norm, args.batch_size, args.steps, args.repeats, device)
            print(f"{case.name:<27} {norm:<5} {r['nrflab']:>9.0f} {r['torchattacks']:>13.0f} {r['limit']:>9.0f}"
                  f" {r['vs_ta']:>10.2f} {r['vs_limit']:>13.2f}", flush=True)
    print("ratios: median over repeats of the paired speed ratio (1.00 = as fast; nrflab/limit > 1 is noise: the limit does strictly less work)")


if __name__ == "__main__":
    main()
