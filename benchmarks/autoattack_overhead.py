"""What nrflab's AutoAttack costs over the direct ``pyautoattack`` call, side by side in one process.

On the same model, images and seed it times, interleaved (the order alternates each repeat):
*direct* -- ``pyautoattack.AutoAttack(model, ...).run_standard_evaluation(x, y)``, built and called by hand;
*nrflab* -- ``parse_attack(spec).build(model)(x, y)`` (the ``@final`` entry point: input checks, the frozen
model, fp32, the caller's RNG kept, the log routed, the eps-ball enforced); *resumable* -- the same with a
fresh ``state_dir`` (the attacks one by one on the images still robust, a state file written after each).
It reports min and median seconds and the ratios to *direct* (target: nrflab / direct <= 1.05), and checks
that the three give the same robust flags and examples within an ulp.

    python benchmarks/autoattack_overhead.py --images 8 --width 0.25 --threads 1 --repeats 3
    python benchmarks/autoattack_overhead.py --spec "autoattack:eps=0.1,seed=0" --images 32   # the standard version
    python benchmarks/autoattack_overhead.py --clock process      # CPU time: steadier on a busy machine
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import pyautoattack
import torch
from torch import nn

from nrflab.attacks import AttackSpec, parse_attack
from nrflab.models import create_model

Run = Callable[[], torch.Tensor]


def runners(model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Run]:
    """The three ways to run the same attack; each returns adversarial examples."""

    def direct() -> torch.Tensor:
        aa = pyautoattack.AutoAttack(
            model,
            attacks=list(spec.attacks) if spec.attacks else None,
            device=x.device,
            eps=spec.eps,
            norm={"linf": "Linf", "l2": "L2"}[spec.norm],
            seed=seed,
            version=spec.version or "standard",
        )
        x_adv: torch.Tensor = aa.run_standard_evaluation(x, y)[0]
        return x_adv

    def nrflab() -> torch.Tensor:
        return spec.build(model, seed=seed)(x, y)

    def resumable() -> torch.Tensor:
        with tempfile.TemporaryDirectory() as state:
            return spec.build(model, seed=seed, state_dir=state)(x, y)

    return {"direct": direct, "nrflab": nrflab, "resumable": resumable}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="autoattack:eps=0.01,version=custom,attacks=apgd-ce+apgd-t")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--width", type=float, default=0.25, help="smallcnn width")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=["wall", "process"], default="wall")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    spec = parse_attack(args.spec)
    model = create_model("smallcnn", "bn", 10, 1, width=args.width, mean=(0.1307,), std=(0.3081,), seed=0).eval()
    x = torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # every image is attacked
    runs = runners(model, spec, x, y, args.seed)

    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            start = clock()
            results[name] = runs[name]()
            times[name].append(clock() - start)

    with torch.no_grad():
        flags = {name: model(adv).argmax(1) == y for name, adv in results.items()}
    print(
        f"{spec.to_string()}: {args.images} images (smallcnn w{args.width:g} bn, 1x28x28), {args.threads} threads, "
        f"{args.repeats} repeats, {args.clock} clock; robust {int(flags['direct'].sum())}/{args.images}"
    )
    base_min, base_med = min(times["direct"]), statistics.median(times["direct"])
    print("| run | min s | median s | min / direct | median / direct | same flags | max |diff| |")
    print("|---|---|---|---|---|---|---|")
    for name, ts in times.items():
        lo, med = min(ts), statistics.median(ts)
        diff = float((results[name] - results["direct"]).abs().max())
        same = bool(torch.equal(flags[name], flags["direct"]))
        print(f"| {name} | {lo:.2f} | {med:.2f} | {lo / base_min:.3f} | {med / base_med:.3f} | {same} | {diff:.1e} |")


if __name__ == "__main__":
    main()
