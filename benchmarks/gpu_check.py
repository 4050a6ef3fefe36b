"""Every GPU check and measurement of the README in one go (about 8 minutes on one H100/H200).

First the equivalence checks, in this process: on the GPU, graphed PGD gives the eager examples bit for
bit, compiled PGD stays within its stated tolerance (Linf bit-exact, L2 within 1e-6), the inversions'
custom loss graphs correctly, the ``auto`` evaluation batch gives the numbers of a fixed batch, a training
epoch makes no host synchronization per step (``torch.cuda.set_sync_debug_mode``), and bf16 and
channels_last training stay finite. Then the benchmarks, each as its own process with a time limit:
attack_speed, builder_speed, train_speed (plain, channels_last + augmentation, compiled) and paper_scale.
Everything printed goes to ``$OUT`` (or ``--out``): ``summary.txt`` (the checks and every step's status)
and one file per benchmark (at most 8 files in all, as the device tool returns). Steps that
would overrun ``--budget`` seconds (default 540) are skipped and listed as such.

    python benchmarks/gpu_check.py                        # on the GPU; results under $OUT or ./gpu-results
    python benchmarks/gpu_check.py --extended --skip-checks --only attack_speed_b1024,train_speed_compiled
    python benchmarks/gpu_check.py --device cpu --smoke   # the same procedure in seconds-sized steps (CPU)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def benchmark_steps(device: str, smoke: bool, extended: bool = False) -> list[tuple[str, list[str], int]]:
    """(name, argv, time limit in seconds) of every benchmark run; ``extended`` adds the large-batch attack
    and the compiled-trainer runs (a few minutes more)."""
    py = [sys.executable]
    if smoke:
        return [
            (
                "attack_speed",
                [
                    *py,
                    str(HERE / "attack_speed.py"),
                    "--device",
                    device,
                    "--repeats",
                    "1",
                    "--batch-size",
                    "8",
                    "--steps",
                    "2",
                ],
                300,
            ),
            (
                "builder_speed",
                [
                    *py,
                    str(HERE / "builder_speed.py"),
                    "--device",
                    device,
                    "--images",
                    "32",
                    "--steps",
                    "2",
                    "--batch-size",
                    "32",
                ],
                300,
            ),
            (
                "paper_scale",
                [
                    *py,
                    str(HERE / "paper_scale.py"),
                    "--device",
                    device,
                    "--quick",
                    "--width",
                    "0.125",
                    "--norms",
                    "bn,none",
                    "--train-size",
                    "32",
                    "--test-size",
                    "16",
                    "--build-images",
                    "2",
                    "--build-steps",
                    "2",
                ],
                600,
            ),
        ]
    steps = [
        (
            "attack_speed",
            [
                *py,
                str(HERE / "attack_speed.py"),
                "--device",
                device,
                "--full-resnet18",
                "--repeats",
                "3",
                "--batch-size",
                "128",
            ],
            150,
        ),
        (
            "builder_speed",
            [
                *py,
                str(HERE / "builder_speed.py"),
                "--device",
                device,
                "--steps",
                "100",
                "--images",
                "4000",
                "--batch-size",
                "1000",
            ],
            90,
        ),
        (
            "train_speed",
            [
                *py,
                str(HERE / "train_speed.py"),
                "--device",
                device,
                "--cifar-resnet18",
                "--epochs",
                "2",
                "--repeats",
                "2",
            ],
            90,
        ),
        (
            "train_speed_cl_aug",
            [
                *py,
                str(HERE / "train_speed.py"),
                "--device",
                device,
                "--cifar-resnet18",
                "--epochs",
                "2",
                "--repeats",
                "2",
                "--channels-last",
                "--augment",
            ],
            90,
        ),
        ("paper_scale", [*py, str(HERE / "paper_scale.py"), "--device", device, "--train-size", "10000"], 240),
    ]
    if extended:
        steps += [
            (
                "attack_speed_b1024",
                [
                    *py,
                    str(HERE / "attack_speed.py"),
                    "--device",
                    device,
                    "--repeats",
                    "3",
                    "--batch-size",
                    "1024",
                    "--variants",
                    "eager,graphs",
                ],
                90,
            ),
            (
                "train_speed_compiled",
                [
                    *py,
                    str(HERE / "train_speed.py"),
                    "--device",
                    device,
                    "--cifar-resnet18",
                    "--epochs",
                    "3",
                    "--repeats",
                    "1",
                    "--channels-last",
                    "--augment",
                    "--compile",
                    "default",
                ],
                180,
            ),
        ]
    return steps


# -- equivalence checks -----------------------------------------------------------------------------------


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def check_attacks(device: torch.device, report: Callable[[str, bool, str], None]) -> None:
    """Graphs replay the eager kernels: bit-exact where eager PGD is itself bit-reproducible (cuDNN may
    pick non-deterministic kernels; then within twice eager's own run-to-run difference). The compiled
    update: Linf bit-exact (a step of +-step_size is exact, fused or not), L2 within 1e-4 after 10 steps
    (another summation order of the norm, fed back through the gradients: on a CPU 1.2e-7 for the small
    CNN and 2.8e-5 for ResNet-18 at width 0.25 after 10 steps; tests/test_accel.py)."""
    from nrflab.attacks import PGD
    from nrflab.models import create_model

    g = torch.Generator().manual_seed(0)
    for arch, width, shape in (("smallcnn", 1.0, (1, 28, 28)), ("resnet18", 0.5, (3, 32, 32))):
        model = create_model(arch, "bn", 10, shape[0], width=width, seed=0).to(device).eval()
        x = torch.rand(64, *shape, generator=g).to(device)
        y = torch.randint(0, 10, (64,), generator=g).to(device)
        for norm, eps, step in (("linf", 8 / 255, 2 / 255), ("l2", 0.5, 0.1)):
            kw = dict(norm=norm, eps=eps, step_size=step, steps=10)
            eager = PGD(model, accelerate=False, cuda_graphs=False, **kw)(x, y)
            noise = _diff(eager, PGD(model, accelerate=False, cuda_graphs=False, **kw)(x, y))
            allowed = 0.0 if noise == 0 else 2 * noise
            where = "" if noise == 0 else f" (eager itself varies by {noise:.3g} run to run)"
            graphed_eager = PGD(model, accelerate=False, cuda_graphs=True, **kw)
            out1, out2 = graphed_eager(x, y), graphed_eager(x, y)
            d = max(_diff(out1, eager), _diff(out2, eager))
            report(
                f"graphs (eager update) == eager, {arch} {norm}",
                d <= allowed and bool(graphed_eager._graphs),
                f"max diff {d:.3g}, captured {bool(graphed_eager._graphs)}{where}",
            )
            compiled = PGD(model, accelerate=True, cuda_graphs=False, **kw)(x, y)
            d = _diff(compiled, eager)
            limit = allowed if norm == "linf" else max(1e-4, allowed)
            report(f"compiled == eager (within {limit:.3g}), {arch} {norm}", d <= limit, f"max diff {d:.3g}{where}")
            default = PGD(model, **kw)
            both = default(x, y)
            d = _diff(both, compiled)
            report(
                f"default (compiled + graphs) == compiled, {arch} {norm}",
                d <= allowed and bool(default._graphs),
                f"max diff {d:.3g}, captured {bool(default._graphs)}{where}",
            )


def check_custom_loss(device: torch.device, report: Callable[[str, bool, str], None]) -> None:
    from nrflab.attacks import PGD
    from nrflab.features.source import Representation
    from nrflab.models import create_model

    model = create_model("resnet18", "bn", 10, 3, width=0.5, seed=0).to(device).eval()
    rep = Representation(model, None, fake_relu=True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 3, 32, 32, generator=g).to(device)
    with torch.no_grad():
        target = rep(torch.rand(32, 3, 32, 32, generator=g).to(device))
    kw = dict(norm="l2", eps=1000.0, step_size=0.1, steps=20, targeted=True, loss_fn=rep.distance_loss)
    eager = PGD(model, accelerate=False, cuda_graphs=False, **kw)(x, target)
    noise = _diff(eager, PGD(model, accelerate=False, cuda_graphs=False, **kw)(x, target))
    graphed = PGD(model, accelerate=False, cuda_graphs=True, **kw)
    out = graphed(x, target)
    d = _diff(out, eager)
    report(
        "inversion loss: graphs == eager",
        d <= 2 * noise and bool(graphed._graphs),
        f"max diff {d:.3g}, captured {bool(graphed._graphs)}, eager run to run {noise:.3g}",
    )


def check_evaluation(device: torch.device, report: Callable[[str, bool, str], None]) -> None:
    from nrflab.core import accel
    from nrflab.data import load_dataset
    from nrflab.models import create_model
    from nrflab.training import make_config
    from nrflab.training.evaluation import EvalSet, evaluate_epoch

    bundle = load_dataset("mnist5k")
    cfg = make_config(
        dataset="mnist5k",
        arch="smallcnn",
        width=0.5,
        device=str(device),
        eval_size=None if device.type == "cuda" else 200,
    )
    model = create_model("smallcnn", "bn", 10, 1, width=0.5, mean=bundle.mean, std=bundle.std, seed=0).to(device).eval()
    data = EvalSet.from_bundle(bundle, cfg, device)
    fixed = evaluate_epoch(model, cfg, data, 10)
    auto_bs = data.batch_size("auto", model) if device.type == "cuda" else 256
    auto_cfg = cfg.model_copy(update={"eval_batch_size": auto_bs})
    auto = evaluate_epoch(model, auto_cfg, EvalSet(data.x, data.y), 10)
    worst = max(abs(fixed[k] - auto[k]) for k in fixed)
    report(
        f"evaluation at the auto batch ({auto_bs}) == batch 256 (within 2/1000 or 1e-4 LIGS)",
        worst <= 2e-3,
        f"largest difference {worst:.3g}",
    )
    if device.type == "cuda":
        probe = accel.probe_memory(model, data.x[:1])
        report("memory probe is positive", probe.per_sample > 0, f"{probe.per_sample / 1024:.1f} KiB per image")


def check_training(device: torch.device, report: Callable[[str, bool, str], None]) -> None:
    import dataclasses

    from nrflab.data import load_dataset
    from nrflab.training import make_config, train

    bundle = load_dataset("mnist5k")
    if device.type != "cuda":  # a CPU try of the procedure: a quarter of the images
        bundle = dataclasses.replace(bundle, train=bundle.train.subset(torch.randperm(4000)[:1000].sort().values))
    with tempfile.TemporaryDirectory() as tmp:
        for fields in ({}, {"amp": "bf16"}, {"channels_last": True}, {"adv_train": "targeted-l2", "adv_steps": 3}):
            cfg = make_config(
                dataset="mnist5k",
                arch="smallcnn",
                width=0.5,
                epochs=2,
                eval_size=256,
                lr=0.05,
                schedule="constant",
                device=str(device),
                **fields,
            )
            res = train(
                cfg,
                Path(tmp) / "_".join(f"{k}-{v}" for k, v in fields.items() or [("plain", 1)]),
                progress=False,
                bundle=bundle,
            )
            row = res.history[-1]
            ok = row["train_loss"] == row["train_loss"] and row["clean_acc"] > 0.3  # chance: 0.1
            report(
                f"training {fields or 'fp32'}: finite and learning",
                ok,
                f"loss {row['train_loss']:.3f}, clean {row['clean_acc']:.3f}",
            )
        if device.type == "cuda":
            check_step_syncs(bundle, Path(tmp), report)


def check_step_syncs(bundle, tmp: Path, report: Callable[[str, bool, str], None]) -> None:
    """Host synchronizations inside the training epochs only (setup, evaluation and checkpoints excluded):
    an epoch's end reads its loss and accuracy (2); an adversarial run captures its step graphs once
    (a synchronization each); nothing else may synchronize, least of all once per step."""
    from nrflab.training import make_config, train
    from nrflab.training import trainer as trainer_module

    original = trainer_module.Trainer._train_epoch
    caught: list[str] = []

    def watched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                return original(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            caught.extend(str(w.message).splitlines()[0] for w in got if "synchroniz" in str(w.message).lower())

    for name, extra, allowed in (
        ("augmented", {}, 2),
        ("adversarial", {"adv_train": "targeted-l2", "adv_steps": 3}, 6),
    ):
        caught.clear()
        cfg = make_config(
            dataset="mnist5k",
            arch="smallcnn",
            width=0.5,
            epochs=2,
            eval_attacks=[],
            ligs=False,
            eval_size=64,
            augment=True,
            device="cuda",
            **extra,
        )
        trainer_module.Trainer._train_epoch = watched  # type: ignore[method-assign]
        try:
            train(cfg, tmp / f"sync-{name}", progress=False, bundle=bundle)
        finally:
            trainer_module.Trainer._train_epoch = original  # type: ignore[method-assign]
        steps = 2 * -(-len(bundle.train) // cfg.batch_size)
        report(
            f"{name} training: no host synchronization per step (at most {2 * allowed} in 2 epochs)",
            len(caught) <= 2 * allowed,
            f"{len(caught)} in {steps} steps{': ' + caught[0] if caught else ''}",
        )


def run_checks(device: torch.device) -> list[str]:
    lines: list[str] = []

    def report(name: str, ok: bool, detail: str) -> None:
        line = f"{'PASS' if ok else 'FAIL'}  {name}: {detail}"
        print(line, flush=True)
        lines.append(line)

    for check in (check_attacks, check_custom_loss, check_evaluation, check_training):
        if device.type != "cuda" and check in (check_attacks, check_custom_loss):
            report(check.__name__, True, "skipped (CUDA only)")
            continue
        try:
            check(device, report)
        except Exception as exc:  # a failing check is reported, the others still run
            report(check.__name__, False, f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
    return lines


def run_benchmarks(
    device: str, smoke: bool, out: Path, *, extended: bool, only: set[str] | None, deadline: float
) -> list[str]:
    lines = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, argv, limit in benchmark_steps(device, smoke, extended):
        if only is not None and name not in only:
            continue
        left = deadline - time.perf_counter()
        if left < 30:
            lines.append(f"{name}: skipped (the time budget is spent)")
            continue
        limit = int(min(limit, left))
        t0 = time.perf_counter()
        print(f"== {name}: {' '.join(argv[1:])} (limit {limit} s)", flush=True)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit, env=env)
            text, status = proc.stdout + proc.stderr, f"exit {proc.returncode}"
        except subprocess.TimeoutExpired as exc:
            text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            status = f"timed out after {limit} s"
        (out / f"{name}.txt").write_text(f"$ {' '.join(argv)}\n{text}")
        print(text[-4000:], flush=True)
        lines.append(f"{name}: {status}, {time.perf_counter() - t0:.0f} s")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    ap.add_argument("--smoke", action="store_true", help="seconds-sized steps (to try the procedure on a CPU)")
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--skip-benchmarks", action="store_true")
    ap.add_argument("--extended", action="store_true", help="also the batch-1024 attack and compiled-trainer runs")
    ap.add_argument("--only", default=None, help="comma-separated benchmark names to run (default: all)")
    ap.add_argument("--budget", type=float, default=540, help="seconds for everything; later steps are skipped")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    deadline = t0 + args.budget
    header = [
        f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
    ]
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            header.append(
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            )
    print("\n".join(header), flush=True)
    checks = [] if args.skip_checks else run_checks(device)
    (out / "summary.txt").write_text("\n".join([*header, *checks]) + "\n")  # kept if a benchmark hangs
    only = None if args.only is None else {n.strip() for n in args.only.split(",") if n.strip()}
    benches = (
        []
        if args.skip_benchmarks
        else run_benchmarks(args.device, args.smoke, out, extended=args.extended, only=only, deadline=deadline)
    )
    summary = [*header, *checks, *benches, f"total {time.perf_counter() - t0:.0f} s"]
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    if any(line.startswith("FAIL") for line in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
