"""The controls of claim 2: does BN's gap (rho_BN - rho_none) shrink when the NRF is made robust, less
available, or moved to a mid band, and which model's reliance moves."""

from __future__ import annotations

from nrflab.core.fmt import cell, difference
from nrflab.core.stats import EXPLAINED, MIN_SEEDS, Verdict, paired_ci
from nrflab.experiments.claims import judge_claim
from nrflab.experiments.evidence import compare_scalars
from nrflab.experiments.guard import check
from nrflab.experiments.planted import declarations as claims
from nrflab.experiments.planted.claims import Capability, capability_void, dropped_text, gated, kept_seeds, names
from nrflab.experiments.planted.declarations import AGREE_VIEW
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.settings import Settings
from nrflab.experiments.planted.text import name


def control_verdicts(m: Measured, s: Settings, op_key: str, cap: Capability) -> list[Verdict]:
    """Does the gap rho_bn - rho_none shrink when the NRF is made robust, less available, mid-band? Paired
    by seed over the seeds where every model of the operating point and of the control learned the set."""
    bn = s.norms[0]
    base, base_dropped = kept_seeds(m, op_key, (bn, "none"), s)
    out = []
    what = {
        "ctl-robust": f"NRF norm {s.a_n:g} -> {s.control_robust_a_n:g} and noise {s.noise:g} -> {s.control_noise:g} "
        "(the same template signal-to-noise ratio)",
        "ctl-noise": f"noise {s.noise:g} -> {s.control_noise:g}, NRF norm {s.a_n:g} kept",
        "ctl-band": f"NRF in the {s.control_band} band, norm {s.a_n:g} kept",
    }
    for key, _ in CONTROLS:
        ctl, dropped = kept_seeds(m, key, (bn, "none"), s)
        seeds = sorted(set(base) & set(ctl))
        left_out = sorted({*dropped, *base_dropped})
        x = [m.values[(op_key, bn, sd)]["rho"] - m.values[(op_key, "none", sd)]["rho"] for sd in seeds]
        y = [m.values[(key, bn, sd)]["rho"] - m.values[(key, "none", sd)]["rho"] for sd in seeds]
        everyone = sorted({*base, *base_dropped} & {*ctl, *dropped})
        judged = seeds if len(seeds) >= MIN_SEEDS else everyone
        guard = check(
            learners=[
                *m.healths(op_key, (bn, "none"), judged, view=AGREE_VIEW),
                *m.healths(key, (bn, "none"), judged, view=AGREE_VIEW),
            ]
        )
        out.append(
            judge_claim(
                claims.CONTROLS[key],
                compare_scalars(x, y, seeds=seeds, note="gap at the operating point minus gap in the control"),
                f"gap rho_{bn} - rho_none: operating point {cell(x, percent=False, signed=True)}, control "
                f"{cell(y, percent=False, signed=True)}." + dropped_text(left_out, s),
                guard=gated(guard, capability_void(cap, (bn, "none"), s)),
                seeds=seeds,
                protocol=f"control: {what[key]}",
                **names(bn),
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


#: What a shrinking gap shows, per control.
READING = {
    "ctl-robust": "consistent with a preference for the small (non-robust) feature",
    "ctl-noise": "not specific to robustness (it follows availability)",
    "ctl-band": "not specific to robustness (it follows the frequency band)",
}


def control_reading(v: Verdict, key: str) -> str:
    """What one control's verdict shows, in words that do not say more than the gap's change."""
    if v.outcome == "agrees":
        return f"the gap shrinks: {READING[key]}"
    if v.outcome == "disagrees":
        return "the gap grows"
    if v.outcome == "inconclusive":
        return "the gap does not change significantly"
    return f"{v.outcome} ({v.reason})"


def controls_summary(
    verdicts: list[Verdict], shifts: dict[str, dict[str, tuple[float, float, float]]], s: Settings
) -> str:
    """Measured sentences: what each control shows about the BN gap, and which model closes it."""
    bn = s.norms[0]

    def moved(key: str, n: str) -> int:
        d, lo, hi = shifts[key][n]
        return 1 if lo > 0 else -1 if hi < 0 else 0

    sentences = []
    for v, (key, label) in zip(verdicts, CONTROLS, strict=True):
        who = [f"{name(n)}'s rho {'rises' if moved(key, n) > 0 else 'falls'}" for n in (bn, "none") if moved(key, n)]
        sentences.append(f"{label} NRF: {control_reading(v, key)}" + (f" ({' and '.join(who)})" if who else ""))
    text = "Reading of the controls: " + "; ".join(sentences) + "."
    judged = {key for v, (key, _) in zip(verdicts, CONTROLS, strict=True) if v.outcome not in EXPLAINED}
    if "ctl-noise" in judged and moved("ctl-noise", bn) < 0:
        text += (
            f" {name(bn)}'s preference follows the NRF's availability: with more noise at the same norm it "
            "falls back toward the RF."
        )
    if "ctl-robust" in judged and moved("ctl-robust", "none") > 0 and moved("ctl-robust", bn) <= 0:
        text += (
            " Making the NRF robust closes the gap from the no-norm side: the larger NRF is adopted without "
            "normalization too. In L2 a robust feature is a large one, so these data cannot separate "
            f"'non-robust' from 'small': {name(bn)}'s advantage is measured for small features."
        )
    return text


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
