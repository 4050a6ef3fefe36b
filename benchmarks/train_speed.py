"""Trainer throughput against a plain hand-written PyTorch loop, and where BN's cost goes.

Part 1 times ``nrflab.training.train`` (epoch_time from metrics.csv: the training epochs only, evaluation
excluded) next to a minimal loop over the same model, in-memory data, batch size, SGD settings and
augmentation setting, interleaved in one process. Part 2 times forward and backward of a BN and a no-BN
smallcnn separately at 1 and 2 threads, with and without channels_last, and profiles the BN model's ops.

    python benchmarks/train_speed.py --threads 1 --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from nrflab.data import DatasetBundle, ImageTensorDataset, load_dataset
from nrflab.models import create_model
from nrflab.training import make_config, read_metrics, train


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


def trainer_speed(case: Case, epochs: int, out: Path) -> float:
    """Images/s of the trainer's training epochs (metrics.csv epoch_time), recording switched off."""
    cfg = make_config(dataset=case.bundle.name, arch=case.arch, norm=case.norm, width=case.width, epochs=epochs,
                      batch_size=case.batch_size, lr=0.01, schedule="constant", augment=False, ligs=False,
                      eval_attacks=[], eval_size=1, device="cpu", seed=0)
    train(cfg, out, overwrite=True, progress=False, log=None, bundle=case.bundle)
    seconds = sum(r["epoch_time"] for r in read_metrics(out)[1:])
    return epochs * len(case.bundle.train) / seconds


def plain_speed(case: Case, epochs: int) -> float:
    """Images/s of the simplest loop: shuffle, slice, convert, forward, loss, backward, SGD step."""
    b = case.bundle
    model = create_model(case.arch, case.norm, b.num_classes, b.in_channels, width=case.width, mean=b.mean,
                         std=b.std, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    images, labels = b.train.images, b.train.labels
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(labels), case.batch_size):
            idx = perm[i : i + case.batch_size]
            x, y = images[idx].float().div_(255.0), labels[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * len(labels) / (time.perf_counter() - start)


def compare(cases: list[Case], epochs: int, repeats: int) -> None:
    print(f"{'model':<34} {'trainer img/s':>14} {'plain img/s':>12} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            ours, plain = [], []
            for r in range(repeats):  # interleaved, so load changes hit both sides alike
                ours.append(trainer_speed(case, epochs, Path(tmp) / f"{case.name}-{r}"))
                plain.append(plain_speed(case, epochs))
            o, p = statistics.median(ours), statistics.median(plain)
            print(f"{case.name:<34} {o:>14.0f} {p:>12.0f} {o / p:>6.2f}x")


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
                print(f"{threads:>7} {str(cl):>13} {n:>5} {f:>7.2f} {b:>7.2f} {f + b:>7.2f} "
                      + (f"{ratio:>7.2f}x" if n == "bn" else f"{'':>8}"))


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
    parser.add_argument("--iters", type=int, default=30, help="timed steps per forward/backward measurement")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_dataset("mnist5k")
    cases = [
        Case("smallcnn w0.5 bn (mnist5k)", mnist, "smallcnn", "bn", 0.5, 64),
        Case("smallcnn w0.5 none (mnist5k)", mnist, "smallcnn", "none", 0.5, 64),
        Case("resnet18 w0.25 bn (random 3x32x32)", random_cifar(), "resnet18", "bn", 0.25, 128),
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs, median of {args.repeats}")
    compare(cases, args.epochs, args.repeats)
    bn_cost(args.iters)
    if not args.no_profile:
        profile_bn(1)


if __name__ == "__main__":
    main()
