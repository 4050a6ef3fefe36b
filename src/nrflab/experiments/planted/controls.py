"""The controls of claim 2: does BN's gap (rho_BN - rho_none) shrink when the NRF is made robust, less
available, or moved to a mid band, and which model's reliance moves."""

from __future__ import annotations

from nrflab.core.fmt import cell, difference
from nrflab.core.stats import Verdict, judge, paired_ci
from nrflab.experiments.planted.claims import Capability, capability_void, dropped_text, pairs_void
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.settings import Settings
from nrflab.experiments.planted.text import name


def control_verdicts(m: Measured, s: Settings, op_key: str, cap: Capability) -> list[Verdict]:
    """Does the BN gap (rho_bn - rho_none) shrink when the NRF is made robust, less available, mid-band?"""
    bn = s.norms[0]

    def gaps(key: str) -> tuple[dict[int, float], list[int]]:
        common = sorted(set(m.seeds(key, bn)) & set(m.seeds(key, "none")))
        ok = m.learned_seeds(key, (bn, "none"), s.learned_min)
        return (
            {sd: m.values[(key, bn, sd)]["rho"] - m.values[(key, "none", sd)]["rho"] for sd in ok},
            [sd for sd in common if sd not in ok],
        )

    base, base_dropped = gaps(op_key)
    out = []
    controls = [
        (
            "ctl-robust",
            "the NRF made robust at equal availability (norm "
            f"{s.a_n:g} -> {s.control_robust_a_n:g} and noise {s.noise:g} -> {s.control_noise:g}: "
            "the same template signal-to-noise ratio)",
            "non-robustness",
        ),
        (
            "ctl-noise",
            f"the NRF made less available (noise {s.noise:g} -> {s.control_noise:g}, norm kept)",
            "availability",
        ),
        ("ctl-band", f"the NRF moved to the {s.control_band} band (norm kept)", "frequency band"),
    ]
    for key, what, factor in controls:
        g, dropped = gaps(key)
        common = sorted(set(base) & set(g))
        left_out = sorted({*dropped, *base_dropped} & {*m.seeds(key, bn), *m.seeds(op_key, bn)})
        x, y = [base[sd] for sd in common], [g[sd] for sd in common]
        d, lo, hi = paired_ci(x, y)
        void = capability_void(cap, (bn, "none"), s) or pairs_void(x, left_out, key)
        out.append(
            judge(
                f"Control ({factor}): the {name(bn)} gap shrinks with {what}",
                d,
                lo,
                hi,
                f"gap rho_{bn} - rho_none: operating point {cell(x, percent=False, signed=True)}, control "
                f"{cell(y, percent=False, signed=True)}; shrinkage {difference(d, lo, hi, percent=False)}."
                + dropped_text(left_out),
                protocol=f"{len(common)} seeds paired",
                void_reason=void,
            )
        )
    return out


CONTROLS = (("ctl-robust", "robust"), ("ctl-noise", "less available"), ("ctl-band", "mid band"))


def control_shifts(m: Measured, s: Settings, op_key: str) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per control and normalization: the paired change of rho from the operating point to the control
    (learned models only), so a reader sees *who* closes the gap."""
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for key, _ in CONTROLS:
        out[key] = {}
        for n in (s.norms[0], "none"):
            ok = sorted(
                set(m.learned_seeds(op_key, (n,), s.learned_min)) & set(m.learned_seeds(key, (n,), s.learned_min))
            )
            out[key][n] = paired_ci(m.series(key, n, "rho", ok), m.series(op_key, n, "rho", ok))
    return out


def shifts_text(shifts: dict[str, dict[str, tuple[float, float, float]]], s: Settings) -> str:
    parts = [
        f"{label}: "
        + ", ".join(f"rho {name(n)} {difference(*shifts[key][n], percent=False)}" for n in (s.norms[0], "none"))
        for key, label in CONTROLS
    ]
    return (
        "Change of each model's rho from the operating point to the control (paired by seed, learned models "
        "only): " + "; ".join(parts) + "."
    )


def controls_summary(
    verdicts: list[Verdict], shifts: dict[str, dict[str, tuple[float, float, float]]], s: Settings
) -> str:
    """Measured sentences: which properties of the NRF the BN gap follows, and which model closes it."""
    if any(v.outcome == "void" for v in verdicts):
        return "Reading of the controls: at least one control is void, so what the BN gap follows is not settled here."
    bn = s.norms[0]

    def moved(key: str, n: str) -> int:
        d, lo, hi = shifts[key][n]
        return 1 if lo > 0 else -1 if hi < 0 else 0

    sentences = []
    for v, (key, label) in zip(verdicts, CONTROLS, strict=True):
        word = {"agrees": "shrinks", "disagrees": "grows", "inconclusive": "does not change significantly"}[v.outcome]
        who = [f"{name(n)}'s rho {'rises' if moved(key, n) > 0 else 'falls'}" for n in (bn, "none") if moved(key, n)]
        sentences.append(f"{label} NRF: the gap {word}" + (f" ({' and '.join(who)})" if who else ""))
    text = "Reading of the controls: " + "; ".join(sentences) + "."
    if moved("ctl-noise", bn) < 0:
        text += (
            f" {name(bn)}'s preference follows the NRF's availability: with more noise at the same norm it "
            "falls back toward the RF."
        )
    if moved("ctl-robust", "none") > 0 and moved("ctl-robust", bn) <= 0:
        text += (
            " Making the NRF robust closes the gap from the no-norm side: the larger NRF is adopted without "
            f"normalization too. In L2 a robust feature is a large one, so these data cannot separate "
            f"'non-robust' from 'small': {name(bn)}'s advantage is specific to small (hence non-robust) features."
        )
    return text


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package
