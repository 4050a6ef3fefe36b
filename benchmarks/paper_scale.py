"""How long the paper takes on this device: one paper-scale epoch of every kind of run, and the whole chain.

Measured, on random images written in the real CIFAR-10 python-batch format and loaded through nrflab's own
loader (accuracies are meaningless; times are not), for the paper's CIFAR ResNet-18 at 32x32:

* a standard training epoch per normalization the chain trains (bn, none, gn, ln, in), and the per-epoch
  evaluation (PGD-L2 and PGD-Linf, 10 steps each, and LIGS, on the test set) per normalization;
* an adversarial training epoch (targeted PGD-L2, 7 steps) with and without BN;
* the feature builds: D_R (representation inversion, 1,000 steps per image; D_NR costs the same) and
  D_rand (targeted PGD-L2, 100 steps; D_det and the conflicting set cost the same), in seconds per image;
* the feature-set twins: training epochs on a built set cost what standard epochs cost (same model, same
  number of images; D_det trains without augmentation) and are projected from them;
* transfer crafting: PGD-Linf, 10 steps, on 10,000 test images with a ResNet-18 source.

Then the chain that ``nrflab reproduce --scale paper`` would run is planned task by task (deduplicated by
run directory) and projected: a training run costs epochs x (its training epoch + its evaluation), a build
costs images x steps x the measured cost of one image-step. Tasks that run as functions (analyses of
finished runs, experiments on small data such as the planted features) are listed but not projected.

Times are measured on ``--train-size`` images and extrapolated linearly to the paper's 50,000 (and on
``--test-size`` test images to 10,000); the first epoch of a multi-epoch measurement is warm-up and is
left out. ``--quick`` measures a handful of images (a CPU check of the whole procedure, minutes).

    python benchmarks/paper_scale.py --device cuda                       # a GPU, about two minutes
    python benchmarks/paper_scale.py --quick --threads 2                 # a CPU: the same table, extrapolated
    python benchmarks/paper_scale.py --quick --width 0.25 --threads 2    # a fast smoke run of the procedure
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nrflab.attacks import PGD
from nrflab.core.errors import NrflabError
from nrflab.core.validation import resolve_device
from nrflab.features import build_dataset
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model
from nrflab.training import make_config, train
from nrflab.training.evaluation import EvalSet, evaluate_epoch

PAPER_TRAIN = 50_000
PAPER_TEST = 10_000
NORMS = ("bn", "none", "gn", "ln", "in")
ADV_NORMS = ("bn", "none")


def write_fake_cifar10(root: Path, train_size: int, test_size: int, seed: int = 0) -> None:
    """Random uint8 images in the official cifar-10-batches-py layout (5 train batches + test batch)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per = -(-train_size // 5)
    for i in range(5):
        n = max(0, min(per, train_size - i * per))
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {
        b"data": rng.integers(0, 256, (test_size, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, test_size).tolist(),
    }
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Args:
    device: torch.device
    root: Path
    work: Path
    train_size: int
    test_size: int
    epochs: int
    width: float
    channels_last: bool
    amp: str
    eval_batch_size: Any
    build_images: int
    build_steps: int
    norms: tuple[str, ...]


@dataclass
class Costs:
    """Seconds per paper-size unit: a training epoch of 50,000 images, an evaluation of 10,000, one
    image of a build, 10,000 crafted images."""

    train_epoch: dict[tuple[str, str], float] = field(default_factory=dict)  # (norm, adv_train) -> s
    eval_epoch: dict[str, float] = field(default_factory=dict)  # norm -> s
    image_step: dict[str, float] = field(default_factory=dict)  # "inversion" / "pgd" -> s per image-step
    crafting: float = float("nan")  # s per 10,000 images

    def train(self, norm: str, adv: str) -> float | None:
        if (norm, adv) in self.train_epoch:
            return self.train_epoch[(norm, adv)]
        # Not measured: the measured standard epoch of this norm, times the adversarial/standard ratio of BN.
        base, ref, ref_adv = (self.train_epoch.get(k) for k in ((norm, "none"), ("bn", "none"), ("bn", adv)))
        return None if None in (base, ref, ref_adv) else base * ref_adv / ref  # type: ignore[operator]


def base_config(a: Args, **fields: Any):
    return make_config(
        dataset="cifar10",
        data_root=str(a.root),
        arch="resnet18",
        width=a.width,
        device=str(a.device),
        channels_last=a.channels_last,
        amp=a.amp,
        **fields,
    )


def time_training(a: Args, norm: str, adv: str) -> float:
    """Seconds of one training epoch of 50,000 images (extrapolated), per-epoch evaluation switched off."""
    cfg = base_config(a, norm=norm, epochs=a.epochs, adv_train=adv, eval_attacks=[], ligs=False, eval_size=1)
    res = train(cfg, a.work / f"train-{norm}-{adv}", overwrite=True, progress=False)
    rows = res.history[1:]
    rows = rows[1:] if len(rows) > 1 else rows
    per_image = statistics.mean(r["epoch_time"] for r in rows) / a.train_size
    return per_image * PAPER_TRAIN


def time_evaluation(a: Args, norm: str) -> float:
    """Seconds of the per-epoch evaluation (paper attacks + LIGS) of 10,000 test images (extrapolated)."""
    cfg = base_config(a, norm=norm, epochs=1, eval_batch_size=a.eval_batch_size)
    from nrflab.data import load_dataset

    bundle = load_dataset("cifar10", root=str(a.root))
    model = create_model("resnet18", norm, 10, 3, width=a.width, mean=bundle.mean, std=bundle.std, seed=0).to(a.device)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = EvalSet.from_bundle(bundle, cfg, a.device)
    repeats = 2 if a.device.type == "cuda" else 1  # the first call captures graphs and probes memory
    for _ in range(repeats):
        sync(a.device)
        t0 = time.perf_counter()
        evaluate_epoch(model, cfg, data, 10)
        sync(a.device)
        seconds = time.perf_counter() - t0
    return seconds / a.test_size * PAPER_TEST


def time_build(a: Args, kind: str, steps: int, ckpt: Path, **settings: Any) -> float:
    """Seconds per image-step of a build of ``kind``: two builds of the same images (end to end: data,
    PGD, quantization, shard writes), with 1 and 1 + ``steps`` steps; their difference is what the steps
    cost, without the fixed cost of loading and writing (which a 50,000-image build spreads thin)."""
    images = a.build_images

    def build(n_steps: int, tag: str) -> float:
        sync(a.device)
        t0 = time.perf_counter()
        build_dataset(
            kind,
            ckpt,
            "cifar10",
            a.work / f"build-{kind}-{tag}",
            data_root=str(a.root),
            device=str(a.device),
            overwrite=True,
            progress=False,
            steps=n_steps,
            limit=images,
            shard_size=images,
            **settings,
        )
        sync(a.device)
        return time.perf_counter() - t0

    build(2, "warm")  # compilation, graph capture, first allocations
    one = build(1, "one")
    more = build(1 + steps, "more")
    return max(more - one, 0.0) / (images * steps)


def time_crafting(a: Args, ckpt_model: torch.nn.Module) -> float:
    """Seconds to craft PGD-Linf (eps 8/255, 10 steps) examples for 10,000 test images (extrapolated)."""
    from nrflab.data import load_dataset
    from nrflab.measure.metrics import dataset_tensors

    x, y = dataset_tensors(load_dataset("cifar10", root=str(a.root)).test)
    x, y = x.to(a.device), y.to(a.device)
    attack = PGD(ckpt_model, norm="linf", eps=8 / 255, step_size=2 / 255, steps=10)
    bs = 256 if not isinstance(a.eval_batch_size, int) else a.eval_batch_size
    bs = max(bs, 256) if a.device.type == "cuda" else bs
    for _ in range(2 if a.device.type == "cuda" else 1):
        sync(a.device)
        t0 = time.perf_counter()
        for i in range(0, x.shape[0], bs):
            attack(x[i : i + bs], y[i : i + bs])
        sync(a.device)
        seconds = time.perf_counter() - t0
    return seconds / x.shape[0] * PAPER_TEST


def measure(a: Args) -> Costs:
    costs = Costs()
    for norm in a.norms:
        costs.train_epoch[(norm, "none")] = time_training(a, norm, "none")
        print(f"  standard epoch, {norm}: {costs.train_epoch[(norm, 'none')]:.1f} s", flush=True)
        costs.eval_epoch[norm] = time_evaluation(a, norm)
        print(f"  evaluation, {norm}: {costs.eval_epoch[norm]:.1f} s", flush=True)
    for norm in ADV_NORMS:
        if norm in a.norms:
            costs.train_epoch[(norm, "targeted-l2")] = time_training(a, norm, "targeted-l2")
            print(f"  adversarial epoch, {norm}: {costs.train_epoch[(norm, 'targeted-l2')]:.1f} s", flush=True)
    model = (
        create_model("resnet18", "bn", 10, 3, width=a.width, mean=(0.49, 0.48, 0.45), std=(0.2, 0.2, 0.2), seed=0)
        .to(a.device)
        .eval()
    )
    ckpt = save_model(model, a.work / "source.safetensors")
    costs.image_step["inversion"] = time_build(
        a, "d_r", a.build_steps, ckpt, eps=1000.0, step_size=0.1, fake_relu=True, label_policy="prediction"
    )
    costs.image_step["pgd"] = time_build(a, "d_rand", a.build_steps, ckpt)
    print(
        f"  builds: {costs.image_step['inversion'] * 1e3:.2f} ms (inversion) and "
        f"{costs.image_step['pgd'] * 1e3:.2f} ms (PGD) per image-step",
        flush=True,
    )
    costs.crafting = time_crafting(a, model)
    return costs


# -- the chain --------------------------------------------------------------------------------------------


@dataclass
class Line:
    experiment: str
    what: str
    count: int = 0
    seconds: float = 0.0
    note: str = ""


def project_chain(costs: Costs, a: Args) -> tuple[list[Line], list[str]]:
    """(cost lines per experiment and kind of task, notes) for the paper-scale chain."""
    from nrflab.experiments.overrides import Overrides
    from nrflab.experiments.reproduce import plan_chain, resolve_chain

    selected = resolve_chain(None, Overrides(scale="paper", data_root=str(a.root), device=str(a.device)))
    plans = plan_chain(selected, a.work / "chain")
    seen: set[str] = set()
    lines: dict[tuple[str, str], Line] = {}
    notes: list[str] = []
    for experiment, tasks in plans.items():
        for t in tasks:
            if t.key in seen:
                continue
            seen.add(t.key)
            if t.kind == "train":
                c = dict(t.config)
                adv = c.get("adv_train", "none")
                what = f"train {'adversarial' if adv != 'none' else 'standard'} ({c['norm']})"
                if c.get("arch") != "resnet18":
                    notes.append(f"{t.label}: {c.get('arch')} not measured; left out")
                    continue
                if float(c.get("width", 1.0)) != a.width and not any("width" in n for n in notes):
                    notes.append(
                        f"the plan trains width {c.get('width')}; the projection uses the measured width {a.width}"
                    )
                epoch = costs.train(c["norm"], adv)
                if epoch is None:
                    notes.append(f"{t.label}: norm {c['norm']} not measured; left out")
                    continue
                evaluates = bool(c.get("eval_attacks")) or bool(c.get("ligs", True))
                size = t.train_size or PAPER_TRAIN
                eval_size = c.get("eval_size") or PAPER_TEST
                per_epoch = epoch * size / PAPER_TRAIN
                per_epoch += costs.eval_epoch.get(c["norm"], 0.0) * eval_size / PAPER_TEST if evaluates else 0.0
                line = lines.setdefault((experiment, what), Line(experiment, what))
                line.count += 1
                line.seconds += c["epochs"] * per_epoch
            elif t.kind == "build":
                s = dict(t.settings)
                unit = costs.image_step["inversion" if t.build_kind in ("d_r", "d_nr") else "pgd"]
                images = s.get("limit") or PAPER_TRAIN
                line = lines.setdefault(
                    (experiment, f"build {t.build_kind}"), Line(experiment, f"build {t.build_kind}")
                )
                line.count += 1
                line.seconds += images * int(s["steps"]) * unit
            else:
                line = lines.setdefault((experiment, "function"), Line(experiment, "function tasks"))
                line.count += 1
                line.note = "not projected (analyses and small-data experiments, run as functions)"
    return list(lines.values()), notes


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="a handful of images, extrapolated (a CPU check)")
    ap.add_argument("--train-size", type=int, default=None, help="training images measured (default 20,000; quick 256)")
    ap.add_argument("--test-size", type=int, default=None, help="test images measured (default 10,000; quick 64)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training measurement (default 2; quick 1)")
    ap.add_argument(
        "--build-images", type=int, default=None, help="images per build measurement (default 1,024; quick 32)"
    )
    ap.add_argument("--build-steps", type=int, default=None, help="steps per build measurement (default 20; quick 8)")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--norms", default=",".join(NORMS))
    ap.add_argument(
        "--eval-batch-size",
        default=None,
        help="an integer or auto (default: auto where the config accepts it, else 1,024 on CUDA and 256 on a CPU)",
    )
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--amp", choices=["none", "bf16"], default="none")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    q = args.quick
    ebs: Any = args.eval_batch_size
    if ebs is None:
        try:
            make_config(eval_batch_size="auto")
            ebs = "auto"
        except NrflabError:
            ebs = 1024 if device.type == "cuda" else 256
    elif ebs != "auto":
        ebs = int(ebs)
    with tempfile.TemporaryDirectory() as tmp:
        a = Args(
            device=device,
            root=Path(tmp) / "cifar10",
            work=Path(tmp) / "work",
            train_size=args.train_size or (256 if q else 20_000),
            test_size=args.test_size or (64 if q else 10_000),
            epochs=args.epochs or (1 if q else 2),
            width=args.width,
            channels_last=args.channels_last,
            amp=args.amp,
            eval_batch_size=ebs,
            build_images=args.build_images or (32 if q else 1024),
            build_steps=args.build_steps or (8 if q else 20),
            norms=tuple(n for n in args.norms.split(",") if n),
        )
        write_fake_cifar10(a.root, a.train_size, a.test_size)
        name = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
        )
        print(
            f"paper scale on {name}, torch {torch.__version__}: resnet18 width {a.width}, measured on {a.train_size} "
            f"training and {a.test_size} test images ({a.epochs} epoch(s)), builds of {a.build_images} images x "
            f"{a.build_steps} steps; channels_last={a.channels_last}, amp={a.amp}, eval batch {ebs}",
            flush=True,
        )
        t0 = time.perf_counter()
        costs = measure(a)
        lines, notes = project_chain(costs, a)
        measured_in = time.perf_counter() - t0

    print("\nOne paper-scale unit of every kind of run (50,000 training images, 10,000 test images):\n")
    print("| run | one epoch (training) | per-epoch evaluation | 150 epochs with evaluation |")
    print("|---|---|---|---|")
    for (norm, adv), ep in costs.train_epoch.items():
        ev = costs.eval_epoch.get(norm, float("nan"))
        kind = "adversarial (targeted PGD-L2, 7 steps)" if adv != "none" else "standard"
        print(f"| {kind}, {norm} | {ep:.1f} s | {ev:.1f} s | {hours(150 * (ep + ev))} |")
    inv, pgd = costs.image_step["inversion"], costs.image_step["pgd"]
    print("\n| build | per image | 50,000 images |\n|---|---|---|")
    print(f"| D_R / D_NR (1,000 inversion steps) | {1000 * inv * 1e3:.1f} ms | {hours(PAPER_TRAIN * 1000 * inv)} |")
    print(
        f"| D_rand / D_det / conflicting (100 PGD-L2 steps) | {100 * pgd * 1e3:.2f} ms | {hours(PAPER_TRAIN * 100 * pgd)} |"
    )
    print(f"| transfer crafting (PGD-Linf, 10 steps), per 10,000 images | | {hours(costs.crafting)} |")
    print("\nThe chain of `nrflab reproduce --scale paper` (each run directory once), projected:\n")
    print("| experiment | tasks | runs | projected |\n|---|---|---|---|")
    total = 0.0
    for line in lines:
        cost = line.note or hours(line.seconds)
        total += line.seconds
        print(f"| {line.experiment} | {line.what} | {line.count} | {cost} |")
    print(f"| **whole chain** | | | **{hours(total)}** |")
    for note in notes:
        print(f"- {note}")
    print(f"\n(measured in {measured_in / 60:.1f} min; feature-set twins are projected from the standard epochs)")


if __name__ == "__main__":
    main()
