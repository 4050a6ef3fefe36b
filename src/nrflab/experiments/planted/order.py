"""Learning order (claim 4): are robust features learned first, then non-robust ones, further with BN?"""

from __future__ import annotations

import math
from pathlib import Path

from nrflab.core.fmt import cell, pct
from nrflab.core.stats import Verdict, finite_mean
from nrflab.experiments.claims import judge_claim
from nrflab.experiments.evidence import compare_scalars
from nrflab.experiments.planted import declarations as claims
from nrflab.experiments.planted.claims import dropped_text, gated, kept_seeds, names, reliance_guard
from nrflab.experiments.planted.declarations import AGREE_VIEW
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


def load_curves(m: Measured, s: Settings, op_key: str) -> dict[str, dict[int, Curve]]:
    """Every operating-point model's reliance curve, by normalization and seed."""
    return {norm: {sd: reliance_curve(m.dirs[(op_key, norm, sd)]) for sd in m.seeds(op_key, norm)} for norm in s.norms}


def lead_and_rise(curve: Curve, s: Settings) -> tuple[float, float, float]:
    """F_R - F_N at the early point, the rise of F_N from there to the end, and the early point's epoch
    (NaN when the model never reached ``early_acc``)."""
    e = early_point(curve, s.early_acc)
    if e is None:
        return math.nan, math.nan, math.nan
    return e["f_r"] - e["f_n"], curve[-1]["f_n"] - e["f_n"], e["epoch"]


def order_verdicts(curves: dict[str, dict[int, Curve]], m: Measured, s: Settings, op_key: str) -> list[Verdict]:
    """Claim 4 on the operating point: per normalization, the RF leads at the early point; then F_N rises
    further with the normalization than without, paired by seed id. Models below the preset's
    ``learned_min`` final agree accuracy are left out (named)."""
    verdicts = []
    found = {n: {sd: lead_and_rise(c, s) for sd, c in curves[n].items()} for n in s.norms}
    for norm in s.norms:
        seeds, dropped = kept_seeds(m, op_key, (norm,), s)
        seeds = [sd for sd in seeds if sd in found[norm]]
        lead = [found[norm][sd][0] for sd in seeds]
        missing = [sd for sd in seeds if not math.isfinite(found[norm][sd][0])]
        guard = reliance_guard(m, op_key, (norm,), seeds, dropped, view=AGREE_VIEW)
        verdicts.append(
            judge_claim(
                claims.ORDER_FIRST,
                compare_scalars(lead, [0.0] * len(seeds), seeds=seeds),
                f"F_R - F_N where agree accuracy first reaches {pct(s.early_acc, 0)} (epoch "
                f"{finite_mean([found[norm][sd][2] for sd in seeds]):.2f} on average): {cell(lead, signed=True)}."
                + dropped_text(dropped, s),
                guard=gated(
                    guard,
                    f"seeds {', '.join(map(str, missing))} never reached {pct(s.early_acc, 0)} agree accuracy on the "
                    "probes"
                    if missing
                    else None,
                ),
                seeds=seeds,
                protocol=f"operating point; probes every {s.probe_every} steps in the first {s.probe_epochs} epochs "
                f"({s.probe_size} swapped images), then per epoch; one-sample t over seeds",
                **names(norm),
            )
        )
    bn = s.norms[0]
    seeds, dropped = kept_seeds(m, op_key, (bn, "none"), s)
    seeds = [sd for sd in seeds if sd in found[bn] and sd in found["none"]]
    rise_bn, rise_none = [found[bn][sd][1] for sd in seeds], [found["none"][sd][1] for sd in seeds]
    verdicts.append(
        judge_claim(
            claims.ORDER_THEN,
            compare_scalars(rise_bn, rise_none, seeds=seeds, note="paired by seed id"),
            f"F_N rise: {name(bn)} {cell(rise_bn, signed=True)}, no norm {cell(rise_none, signed=True)}."
            + dropped_text(dropped, s),
            guard=gated(
                reliance_guard(m, op_key, (bn, "none"), seeds, dropped, view=AGREE_VIEW),
                next((v.reason for v in verdicts if v.outcome == "void"), None),
            ),
            seeds=seeds,
            protocol=f"operating point; F_N from where agree accuracy first reaches {pct(s.early_acc, 0)} to the end",
            **names(bn),
        )
    )
    return verdicts


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
