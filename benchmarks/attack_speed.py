"""PGD throughput of nrflab next to torchattacks and next to the model's own limit, measured side by side.

For each model and norm (Linf, L2; no random start) it times, interleaved in one process on the same model,
inputs, batch size and number of steps: ``nrflab.attacks.PGD`` with the device's defaults (``nrflab``), its
variants (``eager``: no compilation, no graphs; ``compiled``: the per-step update as one compiled kernel;
``graphs``: the whole step as a CUDA graph, CUDA only), ``torchattacks.PGD``/``PGDL2``, and the limit: a
plain loop of forward + ``torch.autograd.grad`` with respect to the input (parameters frozen), one pass per
step and nothing else. Each runs once to warm up (compilation and graph capture happen there), then
``--repeats`` times; the median is reported. Every variant's examples are compared with the eager ones
(largest absolute difference; 0 = the same examples).

    python benchmarks/attack_speed.py --threads 2 --batch-size 128 --steps 10 --repeats 5 [--full-resnet18]
    python benchmarks/attack_speed.py --device cuda --full-resnet18 --repeats 3 --batch-size 512
    python benchmarks/attack_speed.py --variants eager,compiled     # the compiled update on a CPU too
    python benchmarks/attack_speed.py --threads 1 --clock process   # CPU time: steadier on a busy machine
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

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
        Case(
            "smallcnn w1 bn 1x28x28",
            create_model("smallcnn", "bn", 10, 1, width=1.0, mean=(0.1307,), std=(0.3081,), seed=0),
            (1, 28, 28),
        ),
        Case("resnet18 w0.25 bn 3x32x32", create_model("resnet18", "bn", 10, 3, width=0.25, seed=0), (3, 32, 32)),
    ]
    if full_resnet18:
        out.append(
            Case("resnet18 w1 bn 3x32x32", create_model("resnet18", "bn", 10, 3, width=1.0, seed=0), (3, 32, 32))
        )
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
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
    return grad


def supported_variants(device: torch.device) -> list[str]:
    """The PGD variants this nrflab and this device offer (an older nrflab has only its default)."""
    if "accelerate" not in inspect.signature(PGD).parameters:
        return []
    return ["eager", "compiled"] + (["graphs"] if device.type == "cuda" else [])


VARIANT_ARGS = {
    "eager": dict(accelerate=False, cuda_graphs=False),
    "compiled": dict(accelerate=True, cuda_graphs=False),
    "graphs": dict(accelerate=True, cuda_graphs=True),
}


def runners(
    model: nn.Module, norm: str, steps: int, variants: list[str]
) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    import torchattacks

    eps, step = SETTINGS[norm]
    ta_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    out: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
        "nrflab": PGD(model, norm=norm, eps=eps, step_size=step, steps=steps)
    }
    for v in variants:
        out[v] = PGD(model, norm=norm, eps=eps, step_size=step, steps=steps, **VARIANT_ARGS[v])
    out["torchattacks"] = ta_cls(model, eps=eps, alpha=step, steps=steps, random_start=False)
    out["limit"] = lambda x, y: limit_loop(model, x, y, steps)
    return out


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def timed(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Seconds ``fn`` takes on ``clock``: wall time, or this process's CPU time (``process``: steadier on
    a CPU shared with other work; meaningful with one thread, where no thread spins while waiting)."""
    now = CLOCKS[clock]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = now()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return now() - start


def measure(
    case: Case,
    norm: str,
    batch_size: int,
    steps: int,
    repeats: int,
    device: torch.device,
    variants: list[str],
    clock: str = "wall",
) -> dict[str, float]:
    """Median images/s of each runner, the median of the paired (same-repeat) speed ratios, and each
    variant's largest difference from the eager examples.

    The runners are interleaved, in a rotating order, so that load from other processes hits all of them
    alike; ratios taken within one repeat cancel most of what is left of that noise.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *case.shape, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    run = runners(case.model, norm, steps, variants)
    outputs = {name: fn(x, y) for name, fn in run.items()}  # warm-up (compilation, capture)
    names = list(run)
    times: dict[str, list[float]] = {k: [] for k in run}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(lambda fn=run[name]: fn(x, y), device, clock))
    out = {name: batch_size / statistics.median(ts) for name, ts in times.items()}
    for name in ["nrflab", *variants]:
        out[f"{name}/ta"] = statistics.median(t / n for t, n in zip(times["torchattacks"], times[name], strict=True))
        out[f"{name}/limit"] = statistics.median(t / n for t, n in zip(times["limit"], times[name], strict=True))
        if "eager" in outputs and torch.is_tensor(outputs[name]):
            out[f"{name}/diff"] = float((outputs[name] - outputs["eager"]).abs().max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated PGD variants besides the default (eager, compiled, graphs); "
        "default: eager on a CPU (compiling takes a minute there), all on CUDA",
    )
    parser.add_argument("--full-resnet18", action="store_true", help="also time ResNet-18 at full width (slow on CPU)")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall time, or process CPU time (a CPU shared with other work; use --threads 1)",
    )
    args = parser.parse_args()
    if args.clock == "process" and args.device != "cpu":
        parser.error("--clock process measures CPU time: use it with --device cpu")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    offered = supported_variants(device)
    if args.variants is None:
        variants = offered if device.type == "cuda" else [v for v in offered if v == "eager"]
    else:
        variants = [v for v in args.variants.split(",") if v in offered]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    print(
        f"PGD, {args.steps} steps, batch {args.batch_size}, {name}, torch {torch.__version__}; median of "
        f"{args.repeats} (images per {args.clock}-clock second); variants: nrflab (device default){''.join(', ' + v for v in variants)}"
    )
    runner_names = ["nrflab", *variants]
    header = (
        f"{'model':<27} {'norm':<5} "
        + " ".join(f"{n:>9}" for n in runner_names)
        + f" {'torchatt':>9} {'limit':>9} "
        + " ".join(f"{n + '/ta':>12} {n + '/limit':>15}" for n in runner_names)
    )
    print(header)
    print("-" * len(header))
    diffs = []
    for case in cases(args.full_resnet18, device):
        for norm in ("linf", "l2"):
            r = measure(case, norm, args.batch_size, args.steps, args.repeats, device, variants, args.clock)
            print(
                f"{case.name:<27} {norm:<5} "
                + " ".join(f"{r[n]:>9.0f}" for n in runner_names)
                + f" {r['torchattacks']:>9.0f} {r['limit']:>9.0f} "
                + " ".join(f"{r[n + '/ta']:>12.2f} {r[n + '/limit']:>15.2f}" for n in runner_names),
                flush=True,
            )
            diffs += [f"{case.name} {norm} {n}: {r[n + '/diff']:.2g}" for n in runner_names if n + "/diff" in r]
    print(
        "ratios: median over repeats of the paired speed ratio (1.00 = as fast; x/limit > 1 is possible only "
        "where the limit itself is launch-bound: it is a plain eager loop)"
    )
    if diffs:
        print("largest |x_adv - x_adv(eager)|: " + "; ".join(diffs))


if __name__ == "__main__":
    main()
