"""Learning order (claim 4): are robust features learned first, then non-robust ones, further with BN?"""

from __future__ import annotations

import math
from pathlib import Path

from nrflab.core.fmt import cell, difference, pct
from nrflab.core.stats import Verdict, finite_mean, judge, mean_ci, paired_ci
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.settings import Settings
from nrflab.experiments.planted.text import name
from nrflab.runs.rundir import RunDir

Curve = list[dict[str, float]]


def reliance_curve(run_dir: Path) -> list[dict[str, float]]:
    """Reliance over training: the early per-step probes (probes.csv), then the per-epoch rows."""
    run = RunDir(run_dir)
    steps = run.read_probes()
    last = max((r["epoch"] for r in steps), default=-1.0)
    epochs = [r for r in run.read_metrics() if r["epoch"] > last]
    return [{k: r.get(k, math.nan) for k in ("epoch", "agree_acc", "f_r", "f_n", "rho")} for r in steps + epochs]


def early_point(curve: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    """The first point where agree accuracy reaches ``threshold`` (the model has learned something)."""
    return next((r for r in curve if r["agree_acc"] >= threshold), None)


def learning_order(m: Measured, s: Settings, op_key: str) -> tuple[list[Verdict], dict[str, list[Curve]]]:
    curves = {norm: [reliance_curve(m.dirs[(op_key, norm, sd)]) for sd in m.seeds(op_key, norm)] for norm in s.norms}
    verdicts = []
    lead, rise = {}, {}
    for norm in s.norms:
        early = [early_point(c, s.early_acc) for c in curves[norm]]
        lead[norm] = [e["f_r"] - e["f_n"] if e else math.nan for e in early]
        rise[norm] = [c[-1]["f_n"] - e["f_n"] if e else math.nan for c, e in zip(curves[norm], early, strict=True)]
        missing = sum(e is None for e in early)
        d, lo, hi = mean_ci(lead[norm], proportion=False)
        at = [e["epoch"] for e in early if e]
        verdicts.append(
            judge(
                f"Claim 4, robust features are learned first ({name(norm)})",
                d,
                lo,
                hi,
                f"F_R - F_N where agree accuracy first reaches {pct(s.early_acc, 0)} (epoch "
                f"{finite_mean(at):.2f} on average): {cell(lead[norm], signed=True)}; F_N then changes by "
                f"{cell(rise[norm], signed=True)} to the end of training.",
                protocol=f"operating point; probes every {s.probe_every} steps in the first {s.probe_epochs} epochs "
                f"({s.probe_size} swapped images), then per epoch; {len(early)} seeds; t-interval over seeds",
                void_reason=f"{missing} of {len(early)} models never reached {pct(s.early_acc, 0)} agree accuracy"
                if missing
                else None,
            )
        )
    bn = s.norms[0]
    common = min(len(rise[bn]), len(rise["none"]))
    d, lo, hi = paired_ci(rise[bn][:common], rise["none"][:common])
    verdicts.append(
        judge(
            f"Claim 4, then non-robust features, further with {name(bn)} (rise of F_N after the early point)",
            d,
            lo,
            hi,
            f"F_N rise: {name(bn)} {cell(rise[bn], signed=True)}, no norm {cell(rise['none'], signed=True)}; paired difference "
            f"{difference(d, lo, hi, percent=True)}.",
            protocol=f"{common} seeds paired",
            void_reason=next((v.reason for v in verdicts if v.outcome == "void"), None),
        )
    )
    return verdicts, curves


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package
