"""The planted experiment's report: every verdict judged, then one section per question (claims 2-3, claim 4,
claim 5 with the MNIST question, claim 6), each with its tables and figure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from nrflab.core.fmt import cell, interval, markdown_table, num, pct
from nrflab.core.stats import Verdict, finite_mean, wilson
from nrflab.data.planted import PlantedSpec
from nrflab.experiments.planted.claims import (
    Capability,
    capability,
    capable,
    conflicting_verdict,
    drand_verdicts,
    mnist_verdict,
    preference_verdict,
    transfer_verdict,
)
from nrflab.experiments.planted.controls import control_shifts, control_verdicts, controls_summary, shifts_text
from nrflab.experiments.planted.crossing import crossings, crossover_verdict, mean_crossing, sweep_seeds, sweep_values
from nrflab.experiments.planted.figures import plot_conflicting, plot_energy, plot_learning_order, plot_sweep
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.mnist import MnistQuestion
from nrflab.experiments.planted.order import Curve, load_curves, order_verdicts
from nrflab.experiments.planted.settings import Settings, swap_cost
from nrflab.experiments.planted.text import name
from nrflab.experiments.planted.transferability import TransferResult
from nrflab.measure.transfer_rate import IN_BRIEF
from nrflab.report.document import Section, verdict_line
from nrflab.runs.rundir import RunDir

Shifts = dict[str, dict[str, tuple[float, float, float]]]


def build_sections(
    out: Path,
    s: Settings,
    seeds: list[int],
    m: Measured,
    op_key: str,
    op_spec: PlantedSpec,
    mnist: MnistQuestion | None,
    tr: TransferResult,
    seconds: float,
) -> tuple[list[Section], list[Verdict]]:
    """Judge every claim, then write the four report sections (and their figures under ``out``)."""
    cap = capability(m, s)
    pref = [
        v
        for norm in s.norms
        if norm != "none"
        for v in (preference_verdict(m, s, norm, cap, op_key), crossover_verdict(m, s, norm, cap))
    ]
    ctl = control_verdicts(m, s, op_key, cap)
    shifts = control_shifts(m, s, op_key)
    curves = load_curves(m, s, op_key)
    order = order_verdicts(curves, m, s, op_key)
    drand = drand_verdicts(m, s)
    conf = conflicting_verdict(m, s, conflicting_peaks(m, s))
    mv = mnist_verdict(mnist) if mnist else None
    tv = transfer_verdict(tr, m, s, op_key)
    verdicts = [*pref, *ctl, *order, *drand, conf, *([mv] if mv else []), tv]
    sections = [
        preference_section(out, s, seeds, m, op_key, op_spec, seconds, cap, pref, ctl, shifts),
        order_section(out, s, order, curves),
        drand_section(out, s, m, [*drand, conf], mnist, mv),
        transfer_section(out, s, tr, tv),
    ]
    return sections, verdicts


def conflicting_peaks(m: Measured, s: Settings) -> list[float]:
    """The normalized conflicting models' peak accuracy vs y+1 (follows the RF) during training."""
    bn = s.norms[0]
    return [
        max(r.get("shifted_acc", math.nan) for r in RunDir(m.dirs[("conflicting", bn, sd)]).read_metrics())
        for sd in m.seeds("conflicting", bn)
    ]


def pngs(paths: Sequence[Path]) -> list[Path]:
    """The PNG files among a figure's saved files (the report shows those)."""
    return [p for p in paths if p.suffix == ".png"]


# ---------------------------------------------------------------------------------------------
# Section 1: capability, the NRF-norm sweep, claim 2 and its controls


def settings_text(s: Settings, seeds: Sequence[int], op_spec: PlantedSpec, seconds: float) -> str:
    """One paragraph with every setting the numbers depend on."""
    images = (
        "each seed its own images (sample seed = data seed + 1 + seed)"
        if s.vary_samples
        else "the same images for every model"
    )
    return (
        f"Settings: planted {s.size}x{s.size}x3 images, {s.train} training images per set, {s.test} test images "
        f"per view, template seed {s.data_seed} (the same features for every model), {images}; RF norm a_r = {s.a_r:g} "
        f"(low DCT band, shifted up to {op_spec.max_shift} px, +-{100 * op_spec.jitter:.0f} % jitter), NRF in the "
        f"high band at a fixed position, white noise {s.noise:g}; {s.arch} width {s.width}, SGD one-cycle peak "
        f"{s.lr:g}, batch {s.batch_size}, {s.epochs} epochs, no augmentation; seeds {', '.join(map(str, seeds))} "
        f"(paired across normalizations). Wall time {seconds / 60:.1f} min (finished runs are reused). Intervals: "
        "95 % t-intervals over seeds; the verdict rule of nrflab.core.stats."
    )


#: Why the operating point's NRF is the smaller high-frequency feature, not a non-robust one (numbers: the
#: package docstring's calibration).
NOT_NON_ROBUST = (
    "At this norm the NRF is the *smaller, high-frequency* feature, not a non-robust one: its swap cost is above "
    "every evaluated eps, so robust accuracy and LIGS are context, not evidence for claim 2. An NRF with a swap "
    "cost below eps 0.5 (a_n < 0.71) passes no capability gate at this scale: alone, a_n = 0.35 (swap cost 0.25) "
    "stays at chance for both normalizations (4,000 images, 6 epochs); BN learns it alone from a_n = 0.5 (swap "
    "cost 0.35), no normalization only from a_n ~2 (36 % at 1.4, 100 % at 2)."
)


def capability_rows(cap: Capability, s: Settings) -> list[list[str]]:
    return [
        [name(n)]
        + [
            f"{pct(statistics.median(cap[n][f]))} (" + ", ".join(pct(v, 0) for v in cap[n][f]) + ")"
            for f in ("rf", "nrf")
        ]
        + ["yes" if capable(cap[n]["rf"], s) and capable(cap[n]["nrf"], s) else "**no**"]
        for n in s.norms
    ]


def sweep_rows(m: Measured, s: Settings, a_values: Sequence[float]) -> list[list[str]]:
    rows = []
    for a in a_values:
        row = [f"{a:g}" + (" (operating point)" if a == s.a_n else ""), f"{swap_cost(a):.2f}"]
        for n in s.norms:
            row += [
                cell(m.series(f"sweep-a{a:g}", n, "rho"), percent=False, signed=True),
                pct(finite_mean(m.series(f"sweep-a{a:g}", n, "agree_acc"))),
            ]
        rows.append(row)
    return rows


def operating_rows(m: Measured, s: Settings, op_key: str) -> list[list[str]]:
    return [
        [name(n), pct(finite_mean(m.series(op_key, n, "agree_acc")))]
        + [cell(m.series(op_key, n, f"robust_{e:g}")) for e in s.eval_eps]
        + [
            cell(m.series(op_key, n, "ligs"), percent=False),
            cell(m.series(op_key, n, "f_r")),
            cell(m.series(op_key, n, "f_n")),
            cell(m.series(op_key, n, "rho"), percent=False, signed=True),
        ]
        for n in s.norms
    ]


def control_rows(m: Measured, s: Settings, op_key: str) -> list[list[str]]:
    sets = (
        (op_key, f"operating point (a_n {s.a_n:g}, noise {s.noise:g})"),
        ("ctl-robust", f"robust: a_n {s.control_robust_a_n:g}, noise {s.control_noise:g}"),
        ("ctl-noise", f"less available: a_n {s.a_n:g}, noise {s.control_noise:g}"),
        ("ctl-band", f"{s.control_band} band: a_n {s.a_n:g}, noise {s.noise:g}"),
    )
    return [
        [label]
        + [cell(m.series(key, n, "rho"), percent=False, signed=True) for n in s.norms]
        + [pct(finite_mean(m.series(key, n, "agree_acc"))) for n in s.norms]
        for key, label in sets
    ]


def sweep_parts(m: Measured, s: Settings, op_key: str, seeds: Sequence[int]) -> list[str]:
    """The NRF-norm sweep's paragraph, table and crossover sentence."""
    a_values = sweep_values(s)
    cross_seeds = sweep_seeds(m, s, s.norms)
    cross = {n: crossings(m, s, n, cross_seeds)[0] for n in s.norms}
    return [
        f"**NRF-norm sweep** (redundant set: both features predict the label; a_r = {s.a_r:g}, so the RF's swap cost "
        f"is {swap_cost(s.a_r):.2f} in L2; the NRF's is a_n / sqrt 2). Operating point "
        f"{len(m.seeds(op_key, s.norms[0]))} seeds, other points {min(s.sweep_seeds, len(seeds))}:",
        markdown_table(
            ["a_n", "NRF swap cost"] + [h for n in s.norms for h in (f"rho {name(n)}", f"agree acc {name(n)}")],
            sweep_rows(m, s, a_values),
        ),
        "Where rho crosses 0 (a_n*, per seed, log-linear between the learned sweep points; censored at the "
        "sweep's end when it does not cross), geometric mean over seeds: "
        + ", ".join(f"{name(n)} a_n* = {mean_crossing(cross[n])}" for n in s.norms)
        + ". The crossover verdict below pairs them by seed.",
    ]


def preference_section(
    out: Path,
    s: Settings,
    seeds: Sequence[int],
    m: Measured,
    op_key: str,
    op_spec: PlantedSpec,
    seconds: float,
    cap: Capability,
    pref: Sequence[Verdict],
    ctl: list[Verdict],
    shifts: Shifts,
) -> Section:
    """Claims 2-3: capability controls, the NRF-norm sweep, the operating point and the controls."""
    cap_rows = capability_rows(cap, s)
    op_rows = operating_rows(m, s, op_key)
    ctl_rows = control_rows(m, s, op_key)
    sweep_png = pngs(plot_sweep(out / "planted_sweep", m, s))
    md = "\n\n".join(
        [
            "Every image carries a robust feature (RF) and a non-robust feature (NRF) of known classes "
            "(`nrflab.data.planted`); reliance is measured on swapped images (RF of class a, NRF of class b != a): "
            "F_R = share predicting a, F_N = share predicting b, rho = F_N - F_R (+1: follows the NRF only). "
            "All views keep the training images' statistics. " + settings_text(s, seeds, op_spec, seconds),
            "**Capability controls** (each feature alone, the other absent; accuracy on its sufficiency view, "
            f"median and per seed; a normalization must reach {pct(s.capability_min, 0)} in the median seed on both for "
            f"a preference to be defined). Reliance comparisons below leave out seeds where a model stayed below "
            f"{pct(s.learned_min, 0)} agree accuracy:",
            markdown_table(["model", "RF alone", "NRF alone", "capable"], cap_rows),
            *sweep_parts(m, s, op_key, seeds),
            f"**Operating point** (a_n = {s.a_n:g}, NRF swap cost {swap_cost(s.a_n):.2f}; robust accuracy and "
            f"LIGS on {s.eval_size} agree-view images, PGD-L2 {s.pgd_steps} steps). {NOT_NON_ROBUST}",
            markdown_table(
                ["model", "agree acc"] + [f"robust acc L2 {e:g}" for e in s.eval_eps] + ["LIGS", "F_R", "F_N", "rho"],
                op_rows,
            ),
            "\n".join(verdict_line(v) for v in pref),
            "**Controls** (what BN's preference follows; gap = rho_BN - rho_none, paired by seed):",
            markdown_table(
                ["set"] + [f"rho {name(n)}" for n in s.norms] + [f"agree acc {name(n)}" for n in s.norms], ctl_rows
            ),
            "\n".join(verdict_line(v) for v in ctl),
            controls_summary(ctl, shifts, s),
            shifts_text(shifts, s),
        ]
    )
    return Section(
        "Planted features: does BN switch to the smaller high-frequency feature? (claims 2-3)",
        md,
        sweep_png,
        verdicts=[*pref, *ctl],
    )


# ---------------------------------------------------------------------------------------------
# Section 2: learning order (claim 4)


def order_section(out: Path, s: Settings, order: Sequence[Verdict], curves: dict[str, dict[int, Curve]]) -> Section:
    order_png = pngs(plot_learning_order(out / "planted_learning_order", curves, s))
    md = "\n\n".join(
        [
            f"F_R and F_N of the operating-point models (a_n = {s.a_n:g}) every {s.probe_every} optimizer steps in the "
            f"first {s.probe_epochs} epochs (probes.csv of each run, {s.probe_size} swapped images), then after "
            "every epoch (metrics.csv).",
            "\n".join(verdict_line(v) for v in order),
        ]
    )
    return Section(
        "Planted features: robust features first, then non-robust ones? (claim 4)", md, order_png, verdicts=list(order)
    )


# ---------------------------------------------------------------------------------------------
# Section 3: D_rand, the conflicting set and the MNIST question (claim 5, Figure 6)


def drand_rows(m: Measured, s: Settings) -> list[list[str]]:
    drand = [
        [
            f"D_rand, a_n {a:g}" + (" (out of scope: boundary finding)" if a >= s.a_n else ""),
            name(n),
            cell(m.series(f"drand-a{a:g}", n, "agree_acc")),
            cell(m.series(f"drand-a{a:g}", n, "rho"), percent=False, signed=True),
            "",
        ]
        for a in s.drand_a_n
        for n in s.norms
    ]
    conflicting = [
        [
            f"conflicting, a_n {s.conflicting_a_n:g}",
            name(n),
            cell(m.series("conflicting", n, "acc_y")),
            "",
            cell(m.series("conflicting", n, "acc_y1")),
        ]
        for n in s.norms
    ]
    return drand + conflicting


def mnist_parts(s: Settings, mnist: MnistQuestion, mv: Verdict) -> list[str]:
    """The MNIST question's paragraph, table and verdict."""
    mrows = []
    for kind, label in (
        ("planted", f"planted MNIST D_rand (a_n {s.mnist_a_n:g}) / planted MNIST agree view"),
        ("attack", "attack-built MNIST D_rand / planted MNIST agree view"),
    ):
        rows = mnist.rows[kind]
        n_img = mnist.n * len(rows)
        for stats in ("running", "batch"):
            acc = finite_mean([r[f"{stats}_acc"] for r in rows])
            lo, hi = wilson(round(acc * n_img), n_img)
            mrows.append(
                [
                    label,
                    stats,
                    f"{pct(acc)} {interval(lo, hi)}",
                    pct(finite_mean([r[f"{stats}_top"] for r in rows])),
                ]
            )
    return [
        f"**The MNIST question.** A BN smallcnn trained on the planted MNIST D_rand (the digit is the RF, rescaled "
        f"to [{mnist.spec.digit_margin:.2f}, {1 - mnist.spec.digit_margin:.2f}] so the NRF survives "
        f"clipping; the NRF of norm {s.mnist_a_n:g} carries the label) and one trained on the attack-built "
        f"MNIST D_rand (`nrflab.features`, targeted PGD-L2 eps {s.mnist_build_eps:g}, {s.mnist_build_steps} steps "
        f"from a BN source trained {s.mnist_source_epochs} epochs; {s.mnist_train} images). Both are evaluated "
        f"on the same {mnist.n} images, the planted MNIST agree view (mnist5k test digits, each with the "
        "planted NRF of its own class: the label is readable from the digit and from the NRF), with BN's running "
        f"statistics and with each batch of {s.stat_batch} images' own statistics "
        f"(seeds {', '.join(map(str, mnist.seeds))}, pooled):",
        markdown_table(
            ["training set / test set", "BN statistics", "accuracy [Wilson 95 %]", "most frequent class share"],
            mrows,
        ),
        verdict_line(mv),
    ]


def drand_section(
    out: Path,
    s: Settings,
    m: Measured,
    verdicts: Sequence[Verdict],
    mnist: MnistQuestion | None,
    mv: Verdict | None,
) -> Section:
    """Claim 5: planted D_rand and the conflicting set (``verdicts``), then the MNIST question when it ran."""
    fs_rows = drand_rows(m, s)
    conf_png = pngs(plot_conflicting(out / "planted_conflicting", m, s))
    parts = [
        "Planted D_rand: the RF class is independent of the label, the NRF is the label's (the planted counterpart "
        "of Ilyas et al.'s D_rand). Planted conflicting set: the RF of class y-1, the NRF and the label y "
        "(accuracy vs y = follows the NRF, vs y+1 = follows the RF). Evaluated on the agree view, which keeps "
        "the training statistics (no BN running-statistics mismatch).",
        markdown_table(["set", "model", "accuracy (vs y)", "rho", "accuracy vs y+1"], fs_rows),
        "\n".join(verdict_line(v) for v in verdicts),
    ]
    if mnist and mv:
        parts += mnist_parts(s, mnist, mv)
    return Section(
        "Planted features: D_rand, conflicting set and the MNIST question (claim 5, Figure 6)",
        "\n\n".join(parts),
        conf_png,
        verdicts=[*verdicts, *([mv] if mnist and mv else [])],
    )


# ---------------------------------------------------------------------------------------------
# Section 4: transfer with ground truth (claim 6)


def transfer_section(out: Path, s: Settings, tr: TransferResult, tv: Verdict) -> Section:
    tnorms = s.norms
    t_rows = [
        [name(src)]
        + [pct(tr.success.get((src, tgt), math.nan)) for tgt in tnorms]
        + [pct(tr.white_box[src])]
        + [pct(tr.energy[src][f]) for f in ("rf_band", "nrf_band", "rest", "nrf_templates")]
        + [num(tr.energy[src]["norm"], 2)]
        for src in tnorms
    ]
    energy_png = pngs(plot_energy(out / "planted_transfer_energy", tr, s))
    md = "\n\n".join(
        [
            f"Sources and targets: the operating-point models (a_n = {s.a_n:g}). Each source's PGD-L2 adversarial "
            f"examples (eps {s.transfer_eps:g}) are evaluated on every model of the other seeds; each perturbation is "
            "split by the orthonormal DCT into its energy in the RF band, the NRF band and the rest, and the share "
            f"along the NRF templates themselves. Transfer success is {IN_BRIEF}.",
            markdown_table(
                ["source"]
                + [f"success on {name(t)} targets" for t in tnorms]
                + [
                    "white-box success",
                    "energy RF band",
                    "energy NRF band",
                    "energy rest",
                    "energy along NRF templates",
                    "mean L2",
                ],
                t_rows,
            ),
            verdict_line(tv),
            energy_reading(tr, s),
        ]
    )
    return Section("Planted features: transfer with ground truth (claim 6)", md, energy_png, verdicts=[tv])


def energy_reading(t: TransferResult, s: Settings) -> str:
    """One measured sentence on which features each source's adversarial examples move."""
    bn = s.norms[0]
    e_bn, e_none = t.energy[bn], t.energy["none"]
    return (
        f"Reading: {name(bn)} sources put {pct(e_bn['nrf_band'])} of their perturbation energy in the NRF band "
        f"and {pct(e_bn['rf_band'])} in the RF band; no-norm sources {pct(e_none['nrf_band'])} and "
        f"{pct(e_none['rf_band'])}. Success on {name(bn)} targets: from {name(bn)} sources "
        f"{pct(t.success.get((bn, bn), math.nan))}, from no-norm sources {pct(t.success.get(('none', bn), math.nan))};"
        f" on no-norm targets: {pct(t.success.get((bn, 'none'), math.nan))} and "
        f"{pct(t.success.get(('none', 'none'), math.nan))}."
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
