"""Speed of a Fourier heat map (``nrflab.measure.fourier.fourier_heat_map``) at full frequency resolution.

Two cases from the issue: a 28x28 smallcnn (BN, width 1) on 1,000 images (every one of the 394 basis images
of the symmetric half: 394,000 forward passes; target <= 60 s on 2 cores) and a 32x32 ResNet-18 (BN, width
0.25) on 500 images (514 basis images: 257,000 forward passes; target <= 5 min). Untrained weights and random
images: the time does not depend on either. Each case runs in float32 and under bfloat16 autocast.

The time is linear in the number of images, so ``--fraction 0.1`` times a tenth of them and also prints the
extrapolation to the full count (marked ``~``); on a busy machine the process CPU time is printed beside the
wall time, with the load average.

    python benchmarks/fourier_speed.py --threads 2                     # the full cases
    python benchmarks/fourier_speed.py --threads 2 --fraction 0.1      # a tenth, extrapolated
    python benchmarks/fourier_speed.py --device cuda --batch-size 4096
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from nrflab.measure.fourier import PRECISIONS, fourier_heat_map, half_spectrum
from nrflab.models import create_model

CASES = {
    "smallcnn w1 bn 1x28x28": (dict(arch="smallcnn", width=1.0), (1, 28, 28), 1000, 60.0),
    "resnet18 w0.25 bn 3x32x32": (dict(arch="resnet18", width=0.25), (3, 32, 32), 500, 300.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--fraction", type=float, default=1.0, help="Share of the images to time (extrapolated).")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--freeze", action="store_true", help="Also time freeze=True (a frozen TorchScript graph).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs visible, load {load:.1f}")
    print(f"{'case':<28}{'precision':<11}{'images':>7}{'wall s':>9}{'cpu s':>9}{'full s':>9}{'target s':>10}")
    for name, (arch, shape, n_images, target) in CASES.items():
        model = create_model(norm="bn", num_classes=10, in_channels=shape[0], seed=0, **arch).to(device)
        n = max(1, round(n_images * args.fraction))
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(n, *shape, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        fourier_heat_map(model, x[:2], y[:2], eps=4.0, batch_size=args.batch_size)  # warm-up
        variants = [(p, False) for p in args.precisions.split(",")] + ([("float32", True)] if args.freeze else [])
        for precision, freeze in variants:
            wall, cpu = time.perf_counter(), time.process_time()
            fourier_heat_map(model, x, y, eps=4.0, batch_size=args.batch_size, precision=precision, freeze=freeze)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            full = f"{'~' if n != n_images else ''}{wall * n_images / n:.0f}"
            label = precision + ("+frz" if freeze else "")
            print(f"{name:<28}{label:<11}{n:>7}{wall:>9.1f}{cpu:>9.1f}{full:>9}{target:>10.0f}")
        rate, cpu_rate = _forward_rate(model, shape, args.batch_size, device)
        forwards = len(half_spectrum(*shape[1:])) * n_images
        print(
            f"  ({forwards} forward passes at full size; the model's plain forward: {rate:.0f} images/s wall, "
            f"{cpu_rate:.0f} per CPU second, i.e. >= {forwards / rate:.0f} s wall for the full case)"
        )


def _forward_rate(
    model: torch.nn.Module, shape: tuple[int, ...], batch: int, device: torch.device
) -> tuple[float, float]:
    """Images per second (wall and per CPU second) of the eval model's plain forward pass: the heat map's limit."""
    x = torch.rand(batch, *shape, device=device)
    model.eval()
    with torch.inference_mode():
        model(x)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(3):
            model(x)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return 3 * batch / wall, 3 * batch / max(cpu, 1e-9)


if __name__ == "__main__":
    main()
