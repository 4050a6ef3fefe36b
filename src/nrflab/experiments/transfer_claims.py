"""The claims of the transfer experiment (claim 6), declared once and judged from plain per-source
numbers, so tests build them without a zoo.

Sources and targets are **crossed**: every source is attacked onto the same targets (the other final
models of the zoo), so the sources of different seeds are not independent units, and the targets are a
sample of models too. Each claim therefore builds a seed x target table of differences (for each seed
and target, the arm difference on that target, averaged over the seed's sources: archs, or for the
early-stop claim both normalizations) and judges its grand mean with :func:`crossed_interval`: a
two-way random-effects interval over seeds *and* targets (ANOVA mean squares, Satterthwaite dof). When
every target gives the same difference it equals the paired t-interval over seeds; when the targets
disagree it widens, so a claim cannot rest on a lucky panel of targets. Without per-target values (one
mean per source) the table has one column and the interval is the paired t-interval over seeds.

* ``transfer.no_bn``: adversarial examples from sources without BN transfer better (no-BN minus BN
  success);
* ``transfer.early_stop``: the checkpoint of an epoch fixed in the preset transfers better than the final
  model of the same run (early minus final success), the early checkpoints' health checked by the
  guard like the final models'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from nrflab.core.fmt import pct
from nrflab.core.stats import Verdict
from nrflab.experiments.claims import claims_of, judge_claim
from nrflab.experiments.evidence import Comparison
from nrflab.experiments.guard import Guard

FAMILY = "claim 6: transferability"
PAIRING = "seeds and shared targets crossed: per seed and target, the sources of the seed averaged"
CROSSED_PROTOCOL = (
    "interval crossed over seeds and shared targets (two-way random effects, Satterthwaite dof; equals the "
    "paired t over seeds when the targets agree)"
)

_claim = claims_of("transfer", family=FAMILY, unit="points")
NO_BN = _claim(
    id="transfer.no_bn",
    text="RFs transfer better: adversarial examples from sources without {with} transfer better",
    paper="Claim 6: adversarial examples of networks without BN transfer better (robust features)",
    quantity="mean transfer success over targets of the no-BN sources minus the BN sources', per seed (archs averaged)",
    protocol="untargeted attack on the fixed test images; every final model of the zoo is a target; "
    + CROSSED_PROTOCOL,
    models=("BN sources", "no-BN sources"),
    guard="every source learned on the attacked test images; BN and no-BN sources of comparable usefulness",
)
EARLY_STOP = _claim(
    id="transfer.early_stop",
    text="Early-stopped sources (mostly RFs) transfer better than the final model ({early} vs epoch {last})",
    paper="Claim 6: adversarial examples of early-stopped networks transfer better",
    quantity="mean transfer success over targets of each run's early checkpoint (the preset's epoch) minus "
    "its final model's, per seed (runs of the seed averaged)",
    protocol="untargeted attack on the fixed test images; early epoch fixed in the preset; " + CROSSED_PROTOCOL,
    models=("early checkpoints", "final models"),
    guard="every final model and every early checkpoint learned on the attacked test images",
)


@dataclass(frozen=True)
class SourceTwins:
    """The BN and no-BN sources of one arch and seed: each one's mean transfer success over its targets."""

    arch: str
    seed: int
    bn: float
    none: float
    #: Per target (name, success) of the BN and the no-BN source; empty: only the means are known.
    bn_on: tuple[tuple[str, float], ...] = ()
    none_on: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class EarlyVsFinal:
    """One run: mean transfer success of its early checkpoint and of its final model."""

    run: str
    group: str
    epoch: int
    final_epoch: int
    early: float
    final: float
    seed: int = 0
    #: Per target (name, success) of the early checkpoint and of the final model; empty: only the means.
    early_on: tuple[tuple[str, float], ...] = ()
    final_on: tuple[tuple[str, float], ...] = ()

    @property
    def gain(self) -> float:
        return self.early - self.final


def by_seed(values: Sequence[tuple[int, float]]) -> dict[int, float]:
    """The mean of the finite values of each seed (seeds in increasing order)."""
    out: dict[int, list[float]] = {}
    for seed, v in values:
        if math.isfinite(v):
            out.setdefault(seed, []).append(v)
    return {sd: sum(vs) / len(vs) for sd, vs in sorted(out.items())}


@dataclass(frozen=True)
class CrossedInterval:
    """The crossed seed x target interval of a mean difference (see :func:`crossed_interval`)."""

    difference: float
    low: float
    high: float
    p: float
    dof: float
    n_seeds: int
    n_targets: int
    missing: int
    #: The per-seed means of the (filled) table: the seed-only analysis's units.
    per_seed: tuple[float, ...]


def _fill_additive(rows: list[list[float]]) -> list[list[float]]:
    """Missing (NaN) cells filled with the additive fit ``row + column - grand`` of the observed cells,
    iterated to a fixed point (the least-squares fill of a two-way additive table)."""
    nan = [[not math.isfinite(v) for v in r] for r in rows]
    filled = [list(r) for r in rows]
    obs = [v for r in rows for v in r if math.isfinite(v)]
    start = sum(obs) / len(obs)
    for r, miss in zip(filled, nan, strict=True):
        for j, m in enumerate(miss):
            if m:
                r[j] = start
    if not any(any(m) for m in nan):
        return filled
    for _ in range(500):
        grand, row, col = _margins(filled)
        change = 0.0
        for i, miss in enumerate(nan):
            for j, m in enumerate(miss):
                if m:
                    new = row[i] + col[j] - grand
                    change = max(change, abs(new - filled[i][j]))
                    filled[i][j] = new
        if change < 1e-13:
            break
    return filled


def _margins(table: list[list[float]]) -> tuple[float, list[float], list[float]]:
    n_t = len(table[0])
    row = [sum(r) / n_t for r in table]
    col = [sum(r[j] for r in table) / len(table) for j in range(n_t)]
    return sum(row) / len(row), row, col


def crossed_interval(table: Mapping[int, Mapping[str, float]]) -> CrossedInterval:
    """The mean of a seed x target table of differences with a 95 % interval that treats both the seeds
    and the shared targets as random (a crossed two-way random-effects model).

    With ``d[i, t] = mu + a_i + b_t + e_it`` on ``S`` seeds and ``T`` targets, the grand mean's variance is
    ``sa²/S + sb²/T + se²/(S·T)``, estimated from the mean squares of the two-way ANOVA as
    ``(MS_seed + max(0, MS_target - MS_resid)) / (S·T)``; the degrees of freedom are Satterthwaite's
    for that combination. ``MS_seed / (S·T)`` is exactly the paired t-variance over the per-seed means,
    so when every target gives the same difference (identical copies) the interval *is* the seed-only
    t-interval over seeds (S - 1 dof), and it widens when the targets' effects vary. Missing cells (a
    model is not its own target) are filled by the additive fit and taken off the residual dof.
    Deterministic: no resampling.
    """
    from scipy.stats import t as student_t

    seeds = sorted(table)
    targets = sorted({k for sd in seeds for k in table[sd]})
    raw = [[float(table[sd].get(k, math.nan)) for k in targets] for sd in seeds]
    raw = [r for r in raw if any(math.isfinite(v) for v in r)]
    n_s, n_t = len(raw), len(targets)
    if n_s == 0 or n_t == 0:
        return CrossedInterval(math.nan, math.nan, math.nan, math.nan, math.nan, 0, n_t, 0, ())
    missing = sum(not math.isfinite(v) for r in raw for v in r)
    filled = _fill_additive(raw)
    grand, row, col = _margins(filled)
    if n_s < 2:
        return CrossedInterval(grand, math.nan, math.nan, math.nan, math.nan, n_s, n_t, missing, tuple(row))
    ms_seed = n_t * sum((r - grand) ** 2 for r in row) / (n_s - 1)
    ms_target = n_s * sum((c - grand) ** 2 for c in col) / (n_t - 1) if n_t > 1 else 0.0
    dof_resid = (n_s - 1) * (n_t - 1) - missing
    ss_resid = sum((filled[i][j] - row[i] - col[j] + grand) ** 2 for i in range(n_s) for j in range(n_t))
    ms_resid = ss_resid / dof_resid if dof_resid > 0 else 0.0
    extra = max(0.0, ms_target - ms_resid) if n_t > 1 else 0.0
    var = (ms_seed + extra) / (n_s * n_t)
    if extra > 0.0:
        denom = ms_seed**2 / (n_s - 1) + ms_target**2 / (n_t - 1) + (ms_resid**2 / dof_resid if dof_resid > 0 else 0.0)
        dof = (ms_seed + extra) ** 2 / denom
    else:
        dof = float(n_s - 1)
    se = math.sqrt(var)
    if se <= 1e-12 * max(1.0, abs(grand)):
        p = 1.0 if abs(grand) <= 1e-12 else 0.0
        return CrossedInterval(grand, grand, grand, p, dof, n_s, n_t, missing, tuple(row))
    half = float(student_t.ppf(0.975, dof)) * se
    p = float(2 * student_t.sf(abs(grand) / se, dof))
    return CrossedInterval(grand, grand - half, grand + half, p, dof, n_s, n_t, missing, tuple(row))


MEAN_ONLY = "mean over targets"


def seed_target_table(
    rows: Sequence[tuple[int, tuple[tuple[str, float], ...], tuple[tuple[str, float], ...], float, float]],
) -> dict[int, dict[str, float]]:
    """The seed x target table of ``a - b``: rows are (seed, a per target, b per target, a mean, b mean);
    each cell averages the seed's rows whose two values on that target are finite. When any row lacks
    per-target values, every row counts as one pseudo-target, its means (the paired t over seeds)."""
    cells: dict[int, dict[str, list[float]]] = {}
    per_target = all(a_on and b_on for _, a_on, b_on, _, _ in rows)
    for seed, a_on, b_on, a_mean, b_mean in rows:
        pairs = [(k, v, dict(b_on).get(k, math.nan)) for k, v in a_on] if per_target else [(MEAN_ONLY, a_mean, b_mean)]
        for k, x, y in pairs:
            if math.isfinite(x) and math.isfinite(y):
                cells.setdefault(seed, {}).setdefault(k, []).append(x - y)
    return {sd: {k: sum(v) / len(v) for k, v in sorted(row.items())} for sd, row in sorted(cells.items())}


def crossed_comparison(table: Mapping[int, Mapping[str, float]], *, a: float, b: float) -> tuple[Comparison, list[int]]:
    """The claim's comparison from its seed x target table (``a``, ``b``: the arms' means, for the record)."""
    c = crossed_interval(table)
    seeds = sorted(table)
    method = (
        f"95 % interval crossed over {c.n_seeds} seeds ({', '.join(map(str, seeds))}) and {c.n_targets} shared "
        f"target{'s' if c.n_targets != 1 else ''} (two-way random effects, {c.dof:.1f} Satterthwaite dof"
        f"{f'; {c.missing} cells without a pair (a source is not its own target) filled' if c.missing else ''}); {PAIRING}"
    )
    return Comparison(c.difference, c.low, c.high, method, a, b, c.p, c.n_seeds, c.per_seed), seeds


def no_bn_claim(twins: Sequence[SourceTwins], *, guard: Guard, protocol: str = "", names: str = "BN") -> Verdict:
    """No-BN minus BN sources' transfer success, crossed over seeds and shared targets
    (:func:`crossed_interval`; per seed and target the archs are averaged)."""
    nobn = by_seed([(t.seed, t.none) for t in twins])
    bn = by_seed([(t.seed, t.bn) for t in twins])
    table = seed_target_table([(t.seed, t.none_on, t.bn_on, t.none, t.bn) for t in twins])
    c, seeds = crossed_comparison(table, a=_mean(nobn.values()), b=_mean(bn.values()))
    archs = sorted({t.arch for t in twins})
    evidence = (
        f"Mean transfer success over targets, per seed (archs {', '.join(archs)} averaged): no-BN sources "
        f"{', '.join(pct(nobn[sd]) for sd in seeds if sd in nobn)}, BN sources "
        f"{', '.join(pct(bn[sd]) for sd in seeds if sd in bn)} (seeds {', '.join(map(str, seeds))}); "
        f"{_targets_note(table)}"
    )
    return judge_claim(NO_BN, c, evidence, guard=guard, seeds=seeds, protocol=protocol or None, **{"with": names})


def early_stop_claim(rows: Sequence[EarlyVsFinal], *, guard: Guard, early: str, protocol: str = "") -> Verdict:
    """Early checkpoint minus final model, crossed over seeds and shared targets (per seed and target the
    runs of the seed are averaged). Runs whose early epoch is not before the last are left out; ``early``
    names the early checkpoint ("epoch 2": fixed in the preset)."""
    kept = [r for r in rows if r.epoch < r.final_epoch]
    first = by_seed([(r.seed, r.early) for r in kept])
    final = by_seed([(r.seed, r.final) for r in kept])
    table = seed_target_table([(r.seed, r.early_on, r.final_on, r.early, r.final) for r in kept])
    c, seeds = crossed_comparison(table, a=_mean(first.values()), b=_mean(final.values()))
    last = max((r.final_epoch for r in rows), default=0)
    helped = sum(r.gain > 0 for r in kept if math.isfinite(r.gain))
    evidence = (
        f"Early checkpoint ({early}; epochs {', '.join(sorted({str(r.epoch) for r in kept}))}) vs final model "
        f"(epoch {last}), mean transfer success per seed: early {', '.join(pct(first[sd]) for sd in seeds if sd in first)}, "
        f"final {', '.join(pct(final[sd]) for sd in seeds if sd in final)}; higher for {helped}/{len(kept)} runs; "
        f"{_targets_note(table)}"
    )
    return judge_claim(
        EARLY_STOP, c, evidence, guard=guard, seeds=seeds, protocol=protocol or None, early=early, last=str(last)
    )


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _targets_note(table: Mapping[int, Mapping[str, float]]) -> str:
    targets = {k for row in table.values() for k in row}
    if targets <= {MEAN_ONLY}:
        return "only the means over targets are known, so each seed is one unit (paired t over seeds)."
    return f"the {len(targets)} targets are shared by every seed, so seeds and targets are crossed."


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
