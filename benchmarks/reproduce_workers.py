"""Wall time of a ``nrflab reproduce`` chain with 1, 2, ... local worker processes (same cores, fresh
output directories): do independent runs in parallel processes beat one process using every core?

    python benchmarks/reproduce_workers.py                      # the default mini chain, workers 1 and 2
    python benchmarks/reproduce_workers.py --workers 1 2 4 --only core,norms --scale cpu

With one worker the chain runs in this process with torch using every core; with N workers each process
gets cores/N torch threads. Prints one line per setting and a Markdown table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_FLAGS = [
    "--scale",
    "quick",
    "--only",
    "core,norms,features,transfer",
    "--epochs",
    "2",
    "--set",
    "core.twins.eval_size=200",
    "--set",
    "features.build.limit=400",
]


def run_chain(workers: int, flags: list[str], out: Path) -> float:
    cmd = [
        sys.executable,
        "-c",
        "import sys; from nrflab.cli import main; sys.exit(main())",
        "reproduce",
        *flags,
        "--workers",
        str(workers),
        "--out",
        str(out),
        "--quiet",
    ]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("OMP_NUM_THREADS", None)  # torch decides from the cores (one worker) or nrflab sets it (several)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"chain failed with {workers} worker(s):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args, chain_flags = parser.parse_known_args()
    flags = chain_flags or DEFAULT_FLAGS
    print(f"cores: {os.cpu_count()}; chain: nrflab reproduce {' '.join(flags)}")
    rows = []
    for repeat in range(args.repeats):
        for workers in args.workers:
            out = Path(tempfile.mkdtemp(prefix=f"nrf-bench-w{workers}-"))
            try:
                seconds = run_chain(workers, flags, out)
                tasks = json.loads((out / "reproduce.json").read_text())["tasks"]
            finally:
                shutil.rmtree(out, ignore_errors=True)
            task_time = sum(t["seconds"] for t in tasks)
            rows.append(
                {
                    "workers": workers,
                    "repeat": repeat,
                    "seconds": seconds,
                    "tasks": len(tasks),
                    "task_seconds": task_time,
                }
            )
            print(
                f"workers {workers}: {seconds:.1f} s wall ({len(tasks)} tasks, {task_time:.1f} s of task time)",
                flush=True,
            )
    base = min(r["seconds"] for r in rows if r["workers"] == args.workers[0])
    print("\n| workers | wall time (s) | speed-up |\n|---|---|---|")
    for w in args.workers:
        best = min(r["seconds"] for r in rows if r["workers"] == w)
        print(f"| {w} | {best:.1f} | {base / best:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"flags": flags, "cores": os.cpu_count(), "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
