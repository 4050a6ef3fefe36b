"""The headline of claim 2 as a crossover: per normalization and seed, the NRF norm a_n* at which rho
crosses 0 on the sweep, and the paired ratio a_n*(none) / a_n*(BN) over seeds.

a_n* is interpolated linearly in log a_n between the two sweep points around the first crossing from
rho < 0 to rho >= 0, using only the sweep points where that model learned the set (agree accuracy >= the
preset's ``learned_min``). A seed whose rho never crosses within the sweep is **censored at the sweep's
end**: a_n* is set to the last point (rho < 0 throughout: the true a_n* is larger) or the first point
(rho >= 0 throughout: the true a_n* is smaller), and the evidence names it. Censoring no norm high or BN
low understates the ratio (conservative for the claim); the opposite censorings overstate it, and the
evidence says when that happened. The interval is a t-interval over seeds of the log ratio, back-transformed
for reading (the geometric mean ratio).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nrflab.core.stats import Verdict
from nrflab.experiments.claims import judge_claim
from nrflab.experiments.evidence import compare_scalars
from nrflab.experiments.guard import check
from nrflab.experiments.planted import declarations as claims
from nrflab.experiments.planted.claims import Capability, capability_void, gated, names
from nrflab.experiments.planted.declarations import AGREE_VIEW
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.settings import Settings
from nrflab.experiments.planted.text import name
from nrflab.measure.health import Health


@dataclass(frozen=True)
class Crossing:
    """Where one model family's rho crosses 0: ``value`` (NaN with fewer than two usable points),
    ``censored`` ("" inside the sweep, "above" / "below" when it never crosses), ``points`` used."""

    value: float
    censored: str = ""
    points: int = 0

    def text(self) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        mark = {"above": ">", "below": "<"}.get(self.censored, "")
        return f"{mark}{self.value:.2f}"


def crossing(a_values: Sequence[float], rhos: Sequence[float]) -> Crossing:
    """The first crossing of rho from < 0 to >= 0 over increasing ``a_values`` (NaN points skipped),
    interpolated in log a_n; censored at the sweep's end when rho does not cross."""
    pts = sorted((a, r) for a, r in zip(a_values, rhos, strict=True) if math.isfinite(r) and a > 0)
    if len(pts) < 2:
        return Crossing(math.nan, "", len(pts))
    if pts[0][1] >= 0:
        return Crossing(pts[0][0], "below", len(pts))
    for (a0, r0), (a1, r1) in zip(pts, pts[1:], strict=False):
        if r0 < 0 <= r1:
            t = -r0 / (r1 - r0)
            return Crossing(math.exp(math.log(a0) + t * (math.log(a1) - math.log(a0))), "", len(pts))
    return Crossing(pts[-1][0], "above", len(pts))


def sweep_values(s: Settings) -> list[float]:
    """The sweep's NRF norms (the operating point included), increasing."""
    return sorted({*s.sweep, s.a_n})


def sweep_seeds(m: Measured, s: Settings, norms: Sequence[str]) -> list[int]:
    """The seeds every norm has at every sweep point."""
    sets = [set(m.seeds(f"sweep-a{a:g}", n)) for a in sweep_values(s) for n in norms]
    return sorted(set.intersection(*sets)) if sets else []


def crossings(m: Measured, s: Settings, norm: str, seeds: Sequence[int]) -> tuple[dict[int, Crossing], list[Health]]:
    """Per seed, where ``norm``'s rho crosses 0 (from the learned sweep points), and the models used."""
    out, used = {}, []
    for sd in seeds:
        rhos = []
        for a in sweep_values(s):
            row = m.values[(f"sweep-a{a:g}", norm, sd)]
            ok = row.get("agree_acc", math.nan) >= s.learned_min
            rhos.append(row.get("rho", math.nan) if ok else math.nan)
            if ok:
                used.append(m.health(f"sweep-a{a:g}", norm, sd, view=AGREE_VIEW))
        out[sd] = crossing(sweep_values(s), rhos)
    return out, used


def crossover_verdict(m: Measured, s: Settings, norm: str, cap: Capability) -> Verdict:
    """Claim 2 as a crossover: log(a_n*(none) / a_n*(norm)) per seed, t over seeds."""
    seeds = sweep_seeds(m, s, (norm, "none"))
    mine, used_a = crossings(m, s, norm, seeds)
    base, used_b = crossings(m, s, "none", seeds)
    log_none = [math.log(base[sd].value) if math.isfinite(base[sd].value) else math.nan for sd in seeds]
    log_mine = [math.log(mine[sd].value) if math.isfinite(mine[sd].value) else math.nan for sd in seeds]
    comp = compare_scalars(log_none, log_mine, seeds=seeds, note="log ratio of each seed's crossings")
    ratio = f"{math.exp(comp.difference):.2f}" if math.isfinite(comp.difference) else "n/a"
    interval = (
        f"[{math.exp(comp.low):.2f}, {math.exp(comp.high):.2f}]"
        if math.isfinite(comp.low) and math.isfinite(comp.high)
        else "[n/a]"
    )
    per_seed = "; ".join(f"seed {sd}: {name(norm)} {mine[sd].text()}, no norm {base[sd].text()}" for sd in seeds)
    evidence = (
        f"a_n* (rho crosses 0, log-linear between learned sweep points {', '.join(f'{a:g}' for a in sweep_values(s))})"
        f": {per_seed}. Ratio a_n*(no norm) / a_n*({name(norm)}): geometric mean {ratio}, 95 % interval {interval} "
        "(t over seeds on the log ratio, back-transformed)." + censoring_text(mine, base, norm)
    )
    guard = gated(check(learners=[*used_a, *used_b]), capability_void(cap, (norm, "none"), s))
    return judge_claim(
        claims.CROSSOVER,
        comp,
        evidence,
        guard=guard,
        seeds=seeds,
        protocol=f"redundant planted sets, a_r = {s.a_r:g}, noise {s.noise:g}, NRF norms "
        f"{', '.join(f'{a:g}' for a in sweep_values(s))}; estimate: the log ratio (> 0 supports the claim)",
        **names(norm),
    )


def censoring_text(mine: dict[int, Crossing], base: dict[int, Crossing], norm: str) -> str:
    """Which seeds were censored at the sweep's end, and in which direction that moves the ratio."""
    cons = [sd for sd in mine if base[sd].censored == "above" or mine[sd].censored == "below"]
    anti = [sd for sd in mine if base[sd].censored == "below" or mine[sd].censored == "above"]
    parts = []
    if cons:
        parts.append(
            f" Seeds {', '.join(map(str, cons))}: rho did not cross within the sweep and a_n* is censored at its end "
            "(ratio understated: conservative)."
        )
    if anti:
        parts.append(
            f" Seeds {', '.join(map(str, anti))}: censored at the sweep's end in the direction that overstates the "
            f"ratio (no norm crossing below the first point or {name(norm)} beyond the last)."
        )
    return "".join(parts)


def mean_crossing(found: dict[int, Crossing]) -> str:
    """The geometric mean of a normalization's crossings over seeds (censored values included)."""
    vals = [c.value for c in found.values() if math.isfinite(c.value)]
    if not vals:
        return "n/a"
    censored = sum(bool(c.censored) for c in found.values())
    return f"{math.exp(sum(map(math.log, vals)) / len(vals)):.2f}" + (f" ({censored} censored)" if censored else "")


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
