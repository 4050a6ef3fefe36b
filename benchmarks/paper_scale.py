"""Paper-scale cost: one epoch of the paper's CIFAR-10 ResNet-18 recipe (training + per-epoch PGD-L2,
PGD-Linf and LIGS on the full test set), with and without BN, and the projected 150-epoch time.

Random images are written in the real CIFAR-10 python-batch format and loaded through nrflab's own
loader, so the whole pipeline is what runs at paper scale (accuracies are meaningless; times are not).

    python benchmarks/paper_scale.py --device cuda            # a GPU
    python benchmarks/paper_scale.py --train-size 2000 --test-size 500 --width 0.25   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nrflab.training import make_config, train


def write_fake_cifar10(root: Path, train_size: int, test_size: int, seed: int = 0) -> None:
    """Random uint8 images in the official cifar-10-batches-py layout (5 train batches + test batch)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per = -(-train_size // 5)
    for i in range(5):
        n = min(per, train_size - i * per)
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"data": rng.integers(0, 256, (test_size, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, test_size).tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--train-size", type=int, default=50_000)
    ap.add_argument("--test-size", type=int, default=10_000)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cifar10"
        write_fake_cifar10(root, args.train_size, args.test_size)
        for norm in ("bn", "none"):
            cfg = make_config(dataset="cifar10", data_root=str(root), arch="resnet18", norm=norm, width=args.width,
                              epochs=args.epochs, device=args.device, channels_last=args.channels_last)
            t0 = time.perf_counter()
            res = train(cfg, Path(tmp) / f"run-{norm}", progress=False, log=None)
            wall = time.perf_counter() - t0
            trained = res.history[1:]
            epoch_time = sum(r["epoch_time"] for r in trained) / len(trained)
            eval_time = sum(r["eval_time"] for r in trained) / len(trained)
            rows.append((norm, epoch_time, eval_time, wall, args.train_size / epoch_time))
    device = str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(f"resnet18 width {args.width}, train {args.train_size}, test {args.test_size}, batch 128, device {device}, "
          f"torch {torch.__version__}, channels_last={args.channels_last}")
    print(f"{'norm':<6} {'train s/epoch':>14} {'train img/s':>12} {'eval s/epoch':>13} {'150 epochs (h)':>15}")
    for norm, ep, ev, wall, ips in rows:
        print(f"{norm:<6} {ep:>14.1f} {ips:>12.0f} {ev:>13.1f} {150 * (ep + ev) / 3600:>15.2f}")


if __name__ == "__main__":
    main()
