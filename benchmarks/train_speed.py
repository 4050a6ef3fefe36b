"""Trainer throughput against a plain hand-written PyTorch loop and the model's bare training step, and
where BN's cost goes.

Part 1 times ``nrflab.training.train`` (epoch_time from metrics.csv: the training epochs only, evaluation
excluded) next to a minimal loop over the same model, in-memory data on the device, batch size, SGD
settings and augmentation setting, and next to the limit: the bare step (forward, loss, backward, SGD
step) on one fixed batch already on the device -- no indexing, no conversion, no augmentation. All three
run interleaved in one process, with the same ``--amp``/``--channels-last`` settings. ``--compile MODE``
also compiles the model for the trainer (where the config has the field) and the other two. Part 2
(CPU) times forward and backward of a BN and a no-BN smallcnn separately at 1 and 2 threads, with and
without channels_last, and profiles the BN model's ops.

    python benchmarks/train_speed.py --threads 1 --epochs 2 --repeats 3
    python benchmarks/train_speed.py --device cuda --cifar-resnet18 --epochs 2 --repeats 3 --no-profile
    python benchmarks/train_speed.py --device cuda --cifar-resnet18 --channels-last --compile reduce-overhead

"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from nrflab.data import DatasetBundle, ImageTensorDataset, load_dataset
from nrflab.models import create_model
from nrflab.training import TrainConfig, make_config, read_metrics, train


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every side of the comparison shares besides the case."""

    device: torch.device
    epochs: int
    amp: str = "none"
    channels_last: bool = False
    compile: str | None = None
    augment: bool = False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(st: Settings) -> contextlib.AbstractContextManager:
    if st.amp == "bf16":
        return torch.autocast(device_type=st.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def random_cifar(n: int = 1024, seed: int = 0) -> DatasetBundle:
    """CIFAR-shaped random uint8 images with random labels (throughput does not care what is learned)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    data = ImageTensorDataset(images, labels)
    return DatasetBundle("random-cifar", data, data.subset(range(8)), 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)


@dataclasses.dataclass
class Case:
    name: str
    bundle: DatasetBundle
    arch: str
    norm: str
    width: float
    batch_size: int


def build(case: Case, st: Settings) -> tuple[torch.nn.Module, torch.optim.Optimizer, Callable]:
    b = case.bundle
    model = create_model(
        case.arch, case.norm, b.num_classes, b.in_channels, width=case.width, mean=b.mean, std=b.std, seed=0
    ).to(st.device)
    if st.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    forward: Callable = torch.compile(model, mode=st.compile) if st.compile else model
    return model, opt, forward


def trainer_speed(case: Case, st: Settings, out: Path) -> float:
    """Images/s of the trainer's training epochs (metrics.csv epoch_time), recording switched off."""
    fields: dict[str, Any] = dict(
        dataset=case.bundle.name,
        arch=case.arch,
        norm=case.norm,
        width=case.width,
        epochs=st.epochs,
        batch_size=case.batch_size,
        lr=0.01,
        schedule="constant",
        augment=st.augment,
        ligs=False,
        eval_attacks=[],
        eval_size=1,
        device=str(st.device),
        seed=0,
        amp=st.amp,
        channels_last=st.channels_last,
    )
    if st.compile and "compile" in TrainConfig.model_fields:
        fields["compile"] = st.compile
    train(make_config(**fields), out, overwrite=True, progress=False, bundle=case.bundle)
    rows = read_metrics(out)[1:]
    if len(rows) > 1:  # the first epoch pays for warm-up (allocator, cuDNN, compilation): leave it out
        rows = rows[1:]
    return len(rows) * len(case.bundle.train) / sum(r["epoch_time"] for r in rows)


def plain_speed(case: Case, st: Settings) -> float:
    """Images/s of the simplest loop: shuffle, slice, convert, forward, loss, backward, SGD step."""
    from nrflab.training.augment import augment_batch

    b = case.bundle
    model, opt, forward = build(case, st)
    images, labels = b.train.images.to(st.device), b.train.labels.to(st.device)
    model.train()
    gen = torch.Generator().manual_seed(0)
    seconds = 0.0
    for epoch in range(st.epochs):
        sync(st.device)
        start = time.perf_counter()
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch)).to(st.device)
        for i in range(0, len(labels), case.batch_size):
            idx = perm[i : i + case.batch_size]
            x, y = images[idx].float().div_(255.0), labels[idx]
            if st.augment:
                x = augment_batch(x, gen)
            if st.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(st):
                loss = F.cross_entropy(forward(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(st.device)
        if epoch > 0 or st.epochs == 1:  # as the trainer's: the first epoch is warm-up when there are more
            seconds += time.perf_counter() - start
    timed_epochs = st.epochs - 1 if st.epochs > 1 else 1
    return timed_epochs * len(labels) / seconds


def limit_speed(case: Case, st: Settings) -> float:
    """Images/s of the bare training step on one fixed batch already on the device (as many steps as an
    epoch has), after one warm-up epoch's worth when more than one epoch is timed."""
    b = case.bundle
    model, opt, forward = build(case, st)
    x = b.train.images[: case.batch_size].to(st.device).float().div_(255.0)
    y = b.train.labels[: case.batch_size].to(st.device)
    if st.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    steps = -(-len(b.train) // case.batch_size)
    model.train()

    def epoch() -> float:
        sync(st.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            with autocast(st):
                loss = F.cross_entropy(forward(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(st.device)
        return time.perf_counter() - t0

    if st.epochs > 1:
        epoch()
    return steps * case.batch_size / epoch()


def compare(cases: list[Case], st: Settings, repeats: int) -> None:
    print(
        f"{'model':<36} {'trainer img/s':>14} {'plain img/s':>12} {'limit img/s':>12} {'trainer/plain':>14} "
        f"{'trainer/limit':>14}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            ours, plain, limit = [], [], []
            for r in range(repeats):  # interleaved, so load changes hit every side alike
                ours.append(trainer_speed(case, st, Path(tmp) / f"{case.name}-{r}"))
                plain.append(plain_speed(case, st))
                limit.append(limit_speed(case, st))
            o, p, lim = (statistics.median(v) for v in (ours, plain, limit))
            vs_plain = statistics.median(a / b for a, b in zip(ours, plain, strict=True))
            vs_limit = statistics.median(a / b for a, b in zip(ours, limit, strict=True))
            print(
                f"{case.name:<36} {o:>14.0f} {p:>12.0f} {lim:>12.0f} {vs_plain:>13.2f}x {vs_limit:>13.2f}x", flush=True
            )


def fwd_bwd_ms(norm: str, threads: int, channels_last: bool, iters: int, batch: int = 64) -> tuple[float, float]:
    """Median milliseconds of one training-mode forward and of its backward, timed separately."""
    torch.set_num_threads(threads)
    model = create_model("smallcnn", norm, 10, 1, width=0.5, seed=0).train()
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fwd, bwd = [], []
    for i in range(iters + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if i >= 3:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return 1e3 * statistics.median(fwd), 1e3 * statistics.median(bwd)


def bn_cost(iters: int) -> None:
    print(f"\n{'threads':>7} {'channels_last':>13} {'norm':>5} {'fwd ms':>7} {'bwd ms':>7} {'total':>7} {'bn/none':>8}")
    for threads in (1, 2):
        for cl in (False, True):
            times = {n: fwd_bwd_ms(n, threads, cl, iters) for n in ("none", "bn")}
            for n, (f, b) in times.items():
                ratio = sum(times["bn"]) / sum(times["none"]) if n == "bn" else float("nan")
                print(
                    f"{threads:>7} {str(cl):>13} {n:>5} {f:>7.2f} {b:>7.2f} {f + b:>7.2f} "
                    + (f"{ratio:>7.2f}x" if n == "bn" else f"{'':>8}")
                )


def profile_bn(threads: int) -> None:
    """The ops that take the time in one BN smallcnn training step (forward and backward)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    for norm in ("bn", "none"):
        model = create_model("smallcnn", norm, 10, 1, width=0.5, seed=0).train()
        x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
        for _ in range(3):
            F.cross_entropy(model(x), y).backward()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                F.cross_entropy(model(x), y).backward()
        print(f"\nprofile, smallcnn/{norm}, {threads} thread(s), 10 steps:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", default=None, help="torch.compile mode for every side (default: none)")
    parser.add_argument("--augment", action="store_true", help="batched crop + flip on every side")
    parser.add_argument(
        "--cifar-resnet18",
        action="store_true",
        help="only the paper's model: ResNet-18 at full width on 10,000 random 3x32x32 images",
    )
    parser.add_argument("--iters", type=int, default=30, help="timed steps per forward/backward measurement")
    parser.add_argument("--no-bn-cost", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    st = Settings(device, args.epochs, args.amp, args.channels_last, args.compile, args.augment)
    if args.cifar_resnet18:
        cases = [
            Case(f"resnet18 w1 {n} (random 3x32x32)", random_cifar(10_000), "resnet18", n, 1.0, 128)
            for n in ("bn", "none")
        ]
    else:
        mnist = load_dataset("mnist5k")
        cases = [
            Case("smallcnn w0.5 bn (mnist5k)", mnist, "smallcnn", "bn", 0.5, 64),
            Case("smallcnn w0.5 none (mnist5k)", mnist, "smallcnn", "none", 0.5, 64),
            Case("resnet18 w0.25 bn (random 3x32x32)", random_cifar(), "resnet18", "bn", 0.25, 128),
        ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    compiled = args.compile and "compile" in TrainConfig.model_fields
    print(
        f"torch {torch.__version__}, {name}, {args.epochs} epochs (the first is warm-up when > 1), median of "
        f"{args.repeats}; amp {args.amp}, channels_last {args.channels_last}, augment {args.augment}, compile "
        f"{args.compile or 'none'}"
        + ("" if not args.compile or compiled else " (plain and limit only: this config has no compile field)")
    )
    compare(cases, st, args.repeats)
    if device.type == "cpu" and not args.no_bn_cost:
        bn_cost(args.iters)
    if device.type == "cpu" and not args.no_profile:
        profile_bn(1)


if __name__ == "__main__":
    main()
