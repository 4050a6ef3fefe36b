"""How long ``nrflab compare`` takes on two smallcnn twins: PGD on the 1,000 mnist5k test images and AutoAttack
(APGD-CE + APGD-DLR) on the first 500 of them (``--autoattack-limit 500``), LIGS included, as a user runs it.

The twins (smallcnn width 0.25, BN and no normalization, the same seed and recipe) are trained once with a
fixed seed into ``--work`` and reused from there; then the command runs in a fresh process with
``OMP_NUM_THREADS`` = ``--threads`` (target: <= 3 minutes on 2 cores). Printed: the command, wall seconds and
the CPU seconds (user + sys) of that process.

    python benchmarks/compare_speed.py --threads 2
    python benchmarks/compare_speed.py --threads 2 --epochs 5 --work /tmp/nrflab-compare-speed
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from nrflab.training import make_config, train_or_reuse

PGD = "pgd-linf:eps=0.1,step=0.025,steps=10"
AUTOATTACK = "autoattack:version=custom,attacks=apgd-ce+apgd-dlr,eps=0.1"
RUN = "import sys; from nrflab.cli import main; sys.exit(main(sys.argv[1:]))"  # the nrflab command, this interpreter


def twins(work: Path, *, epochs: int, seed: int) -> tuple[Path, Path]:
    """The BN and no-normalization smallcnns (trained once, then reused)."""
    runs = []
    for norm in ("bn", "none"):
        cfg = make_config(
            dataset="mnist5k",
            arch="smallcnn",
            norm=norm,
            width=0.25,
            epochs=epochs,
            eval_attacks=[],
            ligs=False,
            seed=seed,
            device="cpu",
        )
        runs.append(Path(train_or_reuse(cfg, work / f"smallcnn_{norm}_s{seed}", progress=False)))
    return runs[0], runs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="OMP/torch threads of the compare process")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each twin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--aa-images", type=int, default=500, help="--autoattack-limit")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nrflab-compare-speed"))
    args = parser.parse_args()
    bn, none = twins(args.work, epochs=args.epochs, seed=args.seed)
    command = [sys.executable, "-c", RUN, "compare", str(bn), str(none), "-d", "mnist5k", "-a", PGD]
    command += ["-a", AUTOATTACK, "--autoattack-limit", str(args.aa_images), "--seed", str(args.seed)]
    command += ["-o", str(args.work / "compare"), "--overwrite"]
    state = args.work / "compare" / "autoattack-state"  # a timed run starts from scratch, never resumes
    for old in state.glob("autoattack-*.pt") if state.is_dir() else ():
        old.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"compare failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    table = done.stdout[done.stdout.find("# nrflab compare") :]  # the result, without the attack's log
    print(table.strip())
    print(f"command: {shlex.join(['nrflab', *command[3:]])}")
    print(f"threads {args.threads}: wall {wall:.1f} s, CPU (user+sys) {cpu:.1f} s; target: wall <= 180 s")


if __name__ == "__main__":
    main()
