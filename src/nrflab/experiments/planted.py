"""Planted features: the paper's feature-level claims tested against ground truth, at CPU scale.

Every image of a planted set (``nrflab.data.planted``) carries a robust feature (RF: a low-frequency class
template of L2 norm ``a_r`` = 3, shifted by up to 2 px) and a non-robust feature (NRF: a high-frequency
class template of norm ``a_n`` at a fixed position), so a model's reliance is *measured* on swapped
images (``nrflab.reliance``: rho = F_N - F_R, +1 = follows the NRF only, -1 = the RF only), not inferred.
BN and no-normalization smallcnns are trained with the same recipe and seeds (paired), and each claim is
judged by ``nrflab.stats.judge`` (agrees/disagrees only when the paired 95 % interval excludes zero;
void when a capability control failed or too few models learned).

What it trains (defaults, ``FULL``: 98 runs plus the MNIST chain; ``QUICK`` is a pipeline check):

* capability controls (3 seeds): RF alone (no NRF) and NRF alone (no RF) at the operating point; a
  normalization whose median seed stays below 90 % on either makes the preference verdict void;
* the NRF-norm sweep (redundant set: both features fully predictive), rho(a_n) per normalization; the
  operating point a_n = 2 with 5 seeds and early-training probes every 4 steps, the other points 2 seeds;
* controls at the operating point (5 seeds): the NRF made robust at equal availability (norm x2 and white
  noise x2), made less available (noise x2), moved to a mid band;
* planted D_rand (RF class random, label = NRF class) at a_n = 1 and 2, the planted conflicting set
  (RF of class y-1, NRF and label y) at a_n = 2 (5 seeds each);
* the MNIST question (2 seeds): a BN model on the planted MNIST D_rand (the digit is the RF) vs on the
  attack-built MNIST D_rand (``nrflab.features``), each evaluated with running and with batch statistics;
* transfer with ground truth: PGD-L2 1.5 from each operating-point model to the models of the other seeds,
  and where each perturbation's energy lies (RF band, NRF band, rest).

Reliance comparisons leave out seeds in which a model stayed below 90 % agree accuracy (no-normalization
training occasionally blows up at the peak learning rate; the report names the seeds left out).
Runs train in ``workers`` spawned processes with one torch thread each (the numbers do not depend on
``workers``); finished runs are reused.

Calibration behind the defaults (16 x 16, 2,000 training images, smallcnn width 0.5, this package's
generator and trainer; one or two seeds each unless stated):

* At the design's amplitudes (a_r = 3, a_n = 0.35) no model learns the NRF within CPU budgets: the NRF
  alone stays at chance for both normalizations (4,000 images, 6 epochs); BN learns it alone from
  a_n = 0.5, no normalization only from a_n ~ 2 (36 % at 1.4, 100 % at 2). With both features present
  both follow the RF up to a_n = 1. The sweep therefore spans a_n = 1 ... 4 and the operating point is
  a_n = 2 (NRF swap cost ~1.4 in L2, the RF's ~2.1), where no normalization is near indifferent and can
  learn the NRF alone.
* SGD one-cycle peak 0.05 made no-normalization training diverge when the NRF norm was >= 2.8 (agree
  accuracy 18 %, the training loss rising at the peak rate); 0.02 left models under-trained (RF alone
  91 %); Adam 1e-3 under-trained too (RF alone 56-66 %). 0.03 for 6 epochs trained almost every case.
* White noise 0.05 (per pixel) is in every set so the robust control can double the NRF norm at the same
  template signal-to-noise ratio (norm 4, noise 0.1).
* Planted D_rand at a_n = 1: BN 83 % / 100 %, no normalization 10 % / 15 % (two seeds); at a_n = 2 both
  learn it (100 % / 98 %): two amplitudes are run because the claim depends on the NRF's size.
* PGD-L2 eps 1.0 leaves every operating-point model at 0 % (both normalizations), so robust accuracy is
  reported at 0.25 and 0.5 (BN 86 % / 3 %, no normalization 76 % / 22 %, 5 seeds).
* Cost of the default run on a shared 2-core machine: 442 s wall / 362 s CPU in one process (``workers=1``,
  load 3-5 from other jobs), 501 s wall / 402 s CPU with the default two workers (load 5-8); ~3.7 s of CPU
  per run including its measurement. On an otherwise idle 2-core machine the two workers need about
  half the CPU time in wall time (~3.5 min).

Measured with the defaults (seeds 0-4; see the report for intervals): BN's rho crosses 0 at a_n ~1.6, no
normalization's at ~2.3; at a_n = 2 rho is +0.69 (BN) vs -0.66 (none), paired difference +1.35 [0.98,
1.72]; BN learns the RF first and then switches to the NRF (F_R - F_N = +26 points where it first
reaches 50 % accuracy); the availability and mid-band controls shrink BN's preference (BN's rho falls),
the robust control closes the gap because the no-norm model adopts the larger NRF; planted D_rand
separates the normalizations at a_n = 1 (BN 78 %, none 13 %) but not at a_n = 2 (100 % vs 93 %); the
attack-built MNIST D_rand collapses BN's running statistics (14 % running vs 46 % batch) while the planted
MNIST D_rand does not (100 % / 100 %); transfer from no-norm sources is not measurably better
(22 % vs 27 %).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..attacks import PGD
from ..checkpoint import atomic_write_json, load_model
from ..data import load_dataset
from ..data.planted import (
    PlantedSpec,
    band_mask,
    build_bundle,
    dataset_name,
    make_templates,
    make_views,
    spec_from_params,
)
from ..errors import NrflabError
from ..metrics import dataset_tensors, ligs_per_sample
from ..plots import new_figure, save_figure
from ..reliance import BandEnergy, RelianceViews, band_energy, predictions, reliance
from ..report import Section, markdown_table, num, pct, verdict_line
from ..rundir import RunDir
from ..stats import Verdict, fmt_interval, judge, mean_ci, paired_ci, two_proportion_ci, wilson
from ..training import TrainConfig, make_config, run_differences, train_or_reuse

Log = Callable[[str], None]
Capability = dict[str, dict[str, list[float]]]
Curve = list[dict[str, float]]
NORM_NAMES = {"bn": "BN", "none": "no norm", "gn": "GN", "ln": "LN", "in": "IN"}
EVAL_FILE = "planted_eval.json"


@dataclass(frozen=True)
class Settings:
    """Everything the experiment trains and measures (all recorded in the report)."""

    size: int = 16
    train: int = 2000
    test: int = 1000  # images per test view for the final reliance numbers
    probe_size: int = 300  # images per view of the operating point's per-epoch and per-step probes
    curve_probe_size: int = 100  # images per view of the other runs' per-epoch probes (final numbers: test)
    data_seed: int = 0  # templates and samples; the same data for every model (transfer needs it)
    arch: str = "smallcnn"
    width: float = 0.5
    epochs: int = 6
    lr: float = 0.03
    batch_size: int = 64
    norms: tuple[str, ...] = ("bn", "none")  # the first is compared with "none"; extra ones too
    a_r: float = 3.0
    a_n: float = 2.0  # the operating point
    noise: float = 0.05
    sweep: tuple[float, ...] = (1.0, 1.4, 2.0, 2.8, 4.0)
    sweep_seeds: int = 2  # seeds at sweep points other than the operating point
    capability_seeds: int = 3  # seeds of the capability controls (a gate, not a verdict)
    capability_min: float = 0.9
    learned_min: float = 0.9  # agree accuracy below which a model's reliance is not compared
    control_noise: float = 0.1
    control_robust_a_n: float = 4.0  # with control_noise: the base's template signal-to-noise ratio
    control_band: str = "mid"
    drand_a_n: tuple[float, ...] = (1.0, 2.0)
    conflicting_a_n: float = 2.0
    probe_every: int = 4
    probe_epochs: int = 2
    early_acc: float = 0.5  # learning order is read where agree accuracy first reaches this
    eval_eps: tuple[float, ...] = (0.25, 0.5)  # PGD-L2 robust accuracy at the operating point
    # (measured: at eps 1.0 every operating-point model of either normalization is at 0 %)
    pgd_steps: int = 10
    eval_size: int = 500
    transfer_eps: float = 1.5  # above the NRF's swap cost (~1.41 at a_n = 2), below the RF's (~2.1)
    transfer_size: int = 200
    mnist: bool = True
    mnist_seeds: int = 2
    mnist_train: int = 2000
    mnist_a_n: float = 2.0
    mnist_source_epochs: int = 3
    mnist_build_steps: int = 20
    mnist_build_eps: float = 2.0
    mnist_build_step: float = 0.25
    stat_batch: int = 250  # batch size of the batch-statistics evaluation
    workers: int = 2  # training processes (one torch thread each); 1 = all in this process
    device: str = "cpu"

    @property
    def chance(self) -> float:
        return 0.1


FULL = Settings()
QUICK = Settings(
    train=400,
    test=200,
    probe_size=100,
    curve_probe_size=50,
    epochs=2,
    sweep=(2.0,),
    drand_a_n=(1.0,),
    probe_every=3,
    probe_epochs=1,
    eval_eps=(0.5,),
    pgd_steps=3,
    eval_size=100,
    transfer_size=50,
    mnist_seeds=1,
    mnist_train=200,
    mnist_source_epochs=1,
    mnist_build_steps=2,
    stat_batch=100,
    workers=1,
)


# ---------------------------------------------------------------------------------------------
# The runs


@dataclass(frozen=True)
class PlantedRun:
    """One training run of the experiment: which set, which normalization, which seed, what to record."""

    group: str
    key: str
    spec: PlantedSpec
    norm: str
    seed: int
    step_probes: bool = False
    shifted: bool = False
    robust: bool = False

    @property
    def name(self) -> str:
        return f"{self.key}-{self.norm}-s{self.seed}"


def planted_spec(s: Settings, preset: str, **params: Any) -> PlantedSpec:
    """A planted spec on the experiment's common settings (explicit ``params`` win)."""
    base = {
        "size": s.size,
        "train": s.train,
        "test": s.test,
        "a_r": s.a_r,
        "noise": s.noise,
        "seed": s.data_seed,
        "sample_seed": s.data_seed,
    }
    merged = {**base, "preset": preset, **params}
    return spec_from_params({k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in merged.items()})


def plan(s: Settings, seeds: Sequence[int]) -> list[PlantedRun]:
    """Every planted training run, in the order they are trained."""
    seeds = list(seeds)
    runs: list[PlantedRun] = []

    def add(group: str, key: str, spec: PlantedSpec, run_seeds: Sequence[int], **flags: bool) -> None:
        runs.extend(PlantedRun(group, key, spec, norm, seed, **flags) for seed in run_seeds for norm in s.norms)

    cap_seeds = seeds[: max(s.capability_seeds, 2)]
    add("capability-rf", "cap-rf", planted_spec(s, "rf-alone", a_n=0.0), cap_seeds)
    add("capability-nrf", "cap-nrf", planted_spec(s, "nrf-alone", a_r=0.0, a_n=s.a_n), cap_seeds)
    for a in sorted({*s.sweep, s.a_n}):
        op = a == s.a_n
        add(
            "sweep",
            f"sweep-a{a:g}",
            planted_spec(s, "redundant", a_n=a),
            seeds if op else seeds[: s.sweep_seeds],
            step_probes=op,
            robust=op,
        )
    add(
        "control-robust",
        "ctl-robust",
        planted_spec(s, "redundant", a_n=s.control_robust_a_n, noise=s.control_noise),
        seeds,
    )
    add("control-noise", "ctl-noise", planted_spec(s, "redundant", a_n=s.a_n, noise=s.control_noise), seeds)
    add("control-band", "ctl-band", planted_spec(s, "redundant", a_n=s.a_n, nrf_band=s.control_band), seeds)
    for a in s.drand_a_n:
        add("drand", f"drand-a{a:g}", planted_spec(s, "drand", a_n=a), seeds)
    add("conflicting", "conflicting", planted_spec(s, "conflicting", a_n=s.conflicting_a_n), seeds, shifted=True)
    return runs


def recipe(s: Settings, *, dataset: str, norm: str, seed: int, **extra: Any) -> TrainConfig:
    """The one training recipe of every model in the experiment (TrainConfig)."""
    fields = dict(
        dataset=dataset,
        arch=s.arch,
        norm=norm,
        width=s.width,
        epochs=s.epochs,
        lr=s.lr,
        batch_size=s.batch_size,
        schedule="onecycle",
        augment=False,
        flip=False,
        seed=seed,
        eval_attacks=[],
        ligs=False,
        eval_size=min(s.eval_size, s.test),
        device=s.device,
    )
    return make_config(**{**fields, **extra})


def train_run(run: PlantedRun, s: Settings, out: Path, *, progress: bool) -> Path:
    """Train (or reuse) one planted run; per-epoch reliance probes always, per-step ones if asked."""
    cfg = recipe(
        s,
        dataset=dataset_name(run.spec),
        norm=run.norm,
        seed=run.seed,
        probe_every=s.probe_every if run.step_probes else 0,
        probe_epochs=s.probe_epochs if run.step_probes else 1,
        eval_shifted_labels=run.shifted,
    )
    run_dir = out / "runs" / run.name
    if finished_run(run_dir, cfg):
        return run_dir  # reused without generating its data
    bundle = build_bundle(run.spec, probe_size=s.probe_size if run.step_probes else s.curve_probe_size)
    return train_or_reuse(cfg, run_dir, progress=progress, bundle=bundle)


def finished_run(run_dir: Path, cfg: Any) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly this recipe (``train_or_reuse`` would reuse it)."""
    rd = RunDir(run_dir)
    if not (rd.is_run() and rd.config_path.is_file()):
        return False
    status = rd.status()
    return bool(status is not None and status.finished and not run_differences(rd, cfg))


@functools.lru_cache(maxsize=4)
def _full_views(spec: PlantedSpec) -> RelianceViews:
    return RelianceViews.from_samples(make_views(spec))


def _cached(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A JSON result stored next to a run, recomputed when the settings it was made with differ."""
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            stored = {}
        if stored.get("key") == key:
            value: dict[str, Any] = stored["value"]
            return value
    value = compute()
    atomic_write_json(path, {"key": key, "value": value})
    return value


def pgd_l2(model: torch.nn.Module, *, eps: float, steps: int) -> PGD:
    """The experiment's PGD-L2 (step 2.5 eps / steps, no random start, as the paper's evaluation)."""
    return PGD(model, norm="l2", eps=eps, step_size=2.5 * eps / max(steps, 1), steps=steps)


def measure(run: PlantedRun, run_dir: Path, s: Settings) -> dict[str, float]:
    """Final numbers of one run (cached): reliance on the full views; for conflicting runs the accuracy vs y
    and y+1 on the agree view; for operating-point runs robust accuracy and LIGS."""
    key = {
        "test": s.test,
        "eval_size": s.eval_size,
        "eps": list(s.eval_eps),
        "steps": s.pgd_steps,
        "robust": run.robust,
        "shifted": run.shifted,
    }

    def compute() -> dict[str, float]:
        model = load_model(run_dir)
        views = _full_views(run.spec)
        row = reliance(model, views).as_row()
        if run.shifted:
            pred = predictions(model, views.agree_x)
            row["acc_y"] = float((pred == views.agree_y).float().mean())
            row["acc_y1"] = float((pred == (views.agree_y + 1) % run.spec.classes).float().mean())
        if run.robust:
            x, y = views.agree_x[: s.eval_size], views.agree_y[: s.eval_size]
            for eps in s.eval_eps:
                x_adv = pgd_l2(model, eps=eps, steps=s.pgd_steps)(x, y)
                row[f"robust_{eps:g}"] = float((predictions(model, x_adv) == y).float().mean())
            row["ligs"] = ligs_per_sample(model, x, y, sigma=0.01, seed=0).ligs
        return row

    return _cached(run_dir / EVAL_FILE, key, compute)


# ---------------------------------------------------------------------------------------------
# Numbers over seeds


@dataclass(frozen=True)
class Measured:
    """Final numbers of every run, by (key, norm, seed), with each run's directory."""

    values: dict[tuple[str, str, int], dict[str, float]]
    dirs: dict[tuple[str, str, int], Path]

    def seeds(self, key: str, norm: str) -> list[int]:
        return sorted(sd for k, n, sd in self.values if k == key and n == norm)

    def series(self, key: str, norm: str, metric: str, seeds: Sequence[int] | None = None) -> list[float]:
        seeds = self.seeds(key, norm) if seeds is None else seeds
        return [self.values[(key, norm, sd)].get(metric, math.nan) for sd in seeds]

    def paired(self, key: str, a: str, b: str, metric: str) -> tuple[list[float], list[float]]:
        common = sorted(set(self.seeds(key, a)) & set(self.seeds(key, b)))
        return self.series(key, a, metric, common), self.series(key, b, metric, common)


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def cell(values: Sequence[float], *, percent: bool = True, signed: bool = False) -> str:
    """``mean [95 % CI]`` over seeds (t-interval), percent or plain; ``signed`` percentages are differences
    in points (not clipped to [0, 1])."""
    if percent and signed:
        return diff_text(*mean_ci(values, proportion=False), percent=True)
    m, lo, hi = mean_ci(values, proportion=percent)
    if percent:
        return f"{pct(m)} {fmt_interval(lo, hi)}" if math.isfinite(lo) else pct(m)
    fmt = "{:+.2f}" if signed else "{:.3f}"
    if not math.isfinite(m):
        return "n/a"
    return f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]" if math.isfinite(lo) else fmt.format(m)


def diff_text(d: float, lo: float, hi: float, *, percent: bool) -> str:
    if not math.isfinite(d):
        return "n/a"
    if percent:
        return f"{100 * d:+.1f} points {fmt_interval(lo, hi)}"
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f"{d:+.2f} [n/a]"


def name(norm: str) -> str:
    return NORM_NAMES.get(norm, norm)


# ---------------------------------------------------------------------------------------------
# Capability and preference (claims 2-3)


def capability(m: Measured, s: Settings) -> dict[str, dict[str, list[float]]]:
    """Per normalization: per-seed accuracy learning the RF alone and the NRF alone (on their own views)."""
    return {
        norm: {"rf": m.series("cap-rf", norm, "rf_suff_acc"), "nrf": m.series("cap-nrf", norm, "nrf_suff_acc")}
        for norm in s.norms
    }


def capable(values: Sequence[float], s: Settings) -> bool:
    """A normalization can learn a feature alone when the median seed reaches ``capability_min`` (one seed
    lost to an optimization blow-up does not make a feature unlearnable)."""
    vals = [v for v in values if math.isfinite(v)]
    return bool(vals) and statistics.median(vals) >= s.capability_min


def capability_void(cap: dict[str, dict[str, list[float]]], norms: Sequence[str], s: Settings) -> str | None:
    """The reason a preference verdict between ``norms`` is void, or None."""
    failed = [
        f"{name(n)} learns the {f.upper()} alone to a median {pct(statistics.median(cap[n][f]))}"
        for n in norms
        for f in ("rf", "nrf")
        if not capable(cap[n][f], s)
    ]
    return ("capability control failed: " + "; ".join(failed)) if failed else None


def learned_pairs(
    m: Measured, key: str, a: str, b: str, metric: str, s: Settings
) -> tuple[list[float], list[float], list[int]]:
    """``metric`` of norms ``a`` and ``b`` on the seeds where both models learned the set (agree accuracy >=
    ``learned_min``), and the seeds left out: reliance of a model that did not learn says nothing."""
    common = sorted(set(m.seeds(key, a)) & set(m.seeds(key, b)))
    ok = [sd for sd in common if all(m.values[(key, n, sd)]["agree_acc"] >= s.learned_min for n in (a, b))]
    return (m.series(key, a, metric, ok), m.series(key, b, metric, ok), [sd for sd in common if sd not in ok])


def dropped_text(dropped: Sequence[int]) -> str:
    return f" Seeds {', '.join(map(str, dropped))} left out (a model below the learned threshold)." if dropped else ""


def pairs_void(kept: Sequence[float], dropped: Sequence[int], what: str) -> str | None:
    if len(kept) < 2:
        return f"{what}: fewer than two seeds where both models learned (left out: {', '.join(map(str, dropped))})"
    return None


def preference_verdict(m: Measured, s: Settings, norm: str, cap: Capability, op_key: str) -> Verdict:
    """Claim 2 on ground truth: rho(norm) - rho(none) at the operating point, paired by seed."""
    a, b, dropped = learned_pairs(m, op_key, norm, "none", "rho", s)
    d, lo, hi = paired_ci(a, b)
    parts = [
        f"rho = F_N - F_R on swapped images: {name(norm)} {cell(a, percent=False, signed=True)}, no norm "
        f"{cell(b, percent=False, signed=True)}; paired difference {diff_text(d, lo, hi, percent=False)}"
    ]
    for metric, label, percent in [
        *((f"robust_{e:g}", f"robust accuracy PGD-L2 {e:g}", True) for e in s.eval_eps),
        ("ligs", "LIGS", False),
    ]:
        x, y, _ = learned_pairs(m, op_key, norm, "none", metric, s)
        dd, ll, hh = paired_ci(x, y)
        parts.append(
            f"{label} {name(norm)} {cell(x, percent=percent)} vs {cell(y, percent=percent)} "
            f"(difference {diff_text(dd, ll, hh, percent=percent)})"
        )
    void = capability_void(cap, (norm, "none"), s) or pairs_void(a, dropped, "operating point")
    return judge(
        f"Claim 2, {name(norm)} shifts reliance toward the non-robust feature (rho higher than without normalization)",
        d,
        lo,
        hi,
        "; ".join(parts) + "." + dropped_text(dropped),
        protocol=f"redundant planted set (both features fully predictive), a_n = {s.a_n:g}, a_r = "
        f"{s.a_r:g}, noise {s.noise:g}; {len(a)} seeds paired; 95 % t-interval of the paired "
        "difference",
        void_reason=void,
    )


def control_verdicts(m: Measured, s: Settings, op_key: str, cap: Capability) -> list[Verdict]:
    """Does the BN gap (rho_bn - rho_none) shrink when the NRF is made robust, less available, mid-band?"""
    bn = s.norms[0]

    def gaps(key: str) -> tuple[dict[int, float], list[int]]:
        common = sorted(set(m.seeds(key, bn)) & set(m.seeds(key, "none")))
        ok = [sd for sd in common if all(m.values[(key, n, sd)]["agree_acc"] >= s.learned_min for n in (bn, "none"))]
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
                f"{cell(y, percent=False, signed=True)}; shrinkage {diff_text(d, lo, hi, percent=False)}."
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
            ok = [
                sd
                for sd in sorted(set(m.seeds(op_key, n)) & set(m.seeds(key, n)))
                if m.values[(op_key, n, sd)]["agree_acc"] >= s.learned_min
                and m.values[(key, n, sd)]["agree_acc"] >= s.learned_min
            ]
            out[key][n] = paired_ci(m.series(key, n, "rho", ok), m.series(op_key, n, "rho", ok))
    return out


def shifts_text(shifts: dict[str, dict[str, tuple[float, float, float]]], s: Settings) -> str:
    parts = [
        f"{label}: "
        + ", ".join(f"rho {name(n)} {diff_text(*shifts[key][n], percent=False)}" for n in (s.norms[0], "none"))
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


def crossover(a_values: Sequence[float], rhos: Sequence[float]) -> float:
    """The NRF amplitude where mean rho crosses 0 (linear interpolation in log a_n); nan if it does not."""
    pts = [(a, r) for a, r in zip(a_values, rhos, strict=True) if math.isfinite(r)]
    for (a0, r0), (a1, r1) in zip(pts, pts[1:], strict=False):
        if r0 < 0 <= r1:
            t = -r0 / (r1 - r0)
            return float(math.exp(math.log(a0) + t * (math.log(a1) - math.log(a0))))
    if pts and pts[0][1] >= 0:
        return -math.inf
    return math.nan


def crossover_text(x: float, lo: float, hi: float) -> str:
    if x == -math.inf:
        return f"below {lo:g}"
    if math.isnan(x):
        return f"above {hi:g}"
    return f"{x:.2f}"


# ---------------------------------------------------------------------------------------------
# Learning order (claim 4)


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
                f"{_mean(at):.2f} on average): {cell(lead[norm], signed=True)}; F_N then changes by "
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
            f"{diff_text(d, lo, hi, percent=True)}.",
            protocol=f"{common} seeds paired",
            void_reason=next((v.reason for v in verdicts if v.outcome == "void"), None),
        )
    )
    return verdicts, curves


# ---------------------------------------------------------------------------------------------
# D_rand and the conflicting set (claim 5, Figure 6)


def drand_verdicts(m: Measured, s: Settings) -> list[Verdict]:
    out = []
    bn = s.norms[0]
    for a in s.drand_a_n:
        key = f"drand-a{a:g}"
        acc_bn, acc_none = m.paired(key, bn, "none", "agree_acc")
        margin = [s.chance + 0.10 - v for v in acc_none]
        d, lo, hi = mean_ci(margin, proportion=False)
        n_low = sum(v <= s.chance + 0.10 for v in acc_none)
        n_bn = sum(v >= 0.5 for v in acc_bn)
        bn_failed = (
            (
                f"the {name(bn)} twin did not learn either ({pct(_mean(acc_bn))} < 50 %): too short a run to "
                "tell a normalization effect"
            )
            if not _mean(acc_bn) >= 0.5
            else None
        )
        proto = (
            f"planted D_rand (RF class independent of the label, NRF = label), a_n = {a:g}; agree view "
            f"(RF = NRF = label, the training statistics); {len(acc_bn)} seeds"
        )
        out.append(
            judge(
                f"Claim 5, without normalization a network hardly learns from planted D_rand (a_n = {a:g}; accuracy "
                f"within chance + 10 points)",
                d,
                lo,
                hi,
                f"no norm {cell(acc_none)} (within chance + 10 points in {n_low}/{len(acc_none)} seeds).",
                protocol=proto + "; t-interval of (chance + 10 points - accuracy)",
                void_reason=bn_failed,
            )
        )
        d, lo, hi = paired_ci(acc_bn, acc_none)
        out.append(
            judge(
                f"Claim 5, with {name(bn)} it learns from planted D_rand (a_n = {a:g}; more than without)",
                d,
                lo,
                hi,
                f"{name(bn)} {cell(acc_bn)} (>= 50 % in {n_bn}/{len(acc_bn)} seeds) vs no norm {cell(acc_none)}; "
                f"paired difference {diff_text(d, lo, hi, percent=True)}.",
                protocol=proto + "; paired by seed",
            )
        )
    return out


def conflicting_verdict(m: Measured, s: Settings) -> Verdict:
    bn = s.norms[0]
    y_bn, y_none = m.paired("conflicting", bn, "none", "acc_y")
    y1_bn, y1_none = m.paired("conflicting", bn, "none", "acc_y1")
    share_bn = [a - b for a, b in zip(y_bn, y1_bn, strict=True)]
    share_none = [a - b for a, b in zip(y_none, y1_none, strict=True)]
    d, lo, hi = paired_ci(share_bn, share_none)
    peaks = [
        max(r.get("shifted_acc", math.nan) for r in RunDir(m.dirs[("conflicting", bn, sd)]).read_metrics())
        for sd in m.seeds("conflicting", bn)
    ]
    learned = [max(a, b) for a, b in zip(y_bn + y_none, y1_bn + y1_none, strict=True)]
    void = None if _mean(learned) >= 0.5 else "the models follow neither feature (accuracy vs y and y+1 below 50 %)"
    return judge(
        f"Conflicting set: {name(bn)} follows the NRF more than no normalization does",
        d,
        lo,
        hi,
        f"final accuracy vs y (follows the NRF) / vs y+1 (follows the RF): {name(bn)} {cell(y_bn)} / {cell(y1_bn)} "
        f"(peak vs y+1 during training {cell(peaks)}), no norm {cell(y_none)} / {cell(y1_none)}; paired difference "
        f"of (acc y - acc y+1), {name(bn)} minus no norm, {diff_text(d, lo, hi, percent=True)}.",
        protocol=f"planted conflicting set (RF of class y-1, NRF and label y), a_n = {s.conflicting_a_n:g}, "
        f"evaluated on the agree view; {len(y_bn)} seeds paired",
        void_reason=void,
    )


# ---------------------------------------------------------------------------------------------
# The MNIST question


def mnist_question(out: Path, s: Settings, seeds: Sequence[int], *, progress: bool, log: Log) -> dict[str, Any]:
    """BN on the planted MNIST D_rand vs on the attack-built MNIST D_rand, running vs batch statistics."""
    from ..features import build_dataset

    home = out / "mnist"
    mseeds = list(seeds)[: s.mnist_seeds]
    spec = spec_from_params(
        {
            "rf": "mnist",
            "preset": "drand",
            "a_n": f"{s.mnist_a_n:g}",
            "train": str(s.mnist_train),
            "seed": str(s.data_seed),
            "sample_seed": str(s.data_seed),
        }
    )
    bundle = build_bundle(spec, probe_size=s.probe_size)
    source_cfg = recipe(s, dataset="mnist5k", norm="bn", seed=0, epochs=s.mnist_source_epochs)
    source = train_or_reuse(source_cfg, home / "source", progress=progress)
    built = home / "d_rand"
    build_dataset(
        "d_rand",
        source,
        "mnist5k",
        built,
        steps=s.mnist_build_steps,
        eps=s.mnist_build_eps,
        step_size=s.mnist_build_step,
        limit=s.mnist_train,
        seed=0,
        device=s.device,
        resume=True,
        progress=progress,
    )
    test_x, test_y = dataset_tensors(load_dataset("mnist5k").test)
    views = RelianceViews.from_samples(make_views(spec))
    rows: dict[str, list[dict[str, float]]] = {"planted": [], "attack": []}
    for seed in mseeds:
        planted_dir = train_or_reuse(
            recipe(s, dataset=dataset_name(spec), norm="bn", seed=seed),
            home / f"planted-bn-s{seed}",
            progress=progress,
            bundle=bundle,
        )
        attack_dir = train_or_reuse(
            recipe(s, dataset=str(built), norm="bn", seed=seed), home / f"attack-bn-s{seed}", progress=progress
        )
        for kind, run_dir, x, y in (
            ("planted", planted_dir, views.agree_x, views.agree_y),
            ("attack", attack_dir, test_x, test_y),
        ):
            key = {"n": int(y.shape[0]), "batch": s.stat_batch}
            rows[kind].append(
                _cached(
                    Path(run_dir) / "planted_stats.json",
                    key,
                    functools.partial(statistics_row_of, Path(run_dir), x, y, s),
                )
            )
    log(f"MNIST question: {len(mseeds)} seed(s) done")
    return {"rows": rows, "seeds": mseeds, "spec": spec, "n": int(test_y.shape[0])}


def statistics_row_of(run_dir: Path, x: torch.Tensor, y: torch.Tensor, s: Settings) -> dict[str, float]:
    return statistics_row(load_model(run_dir), x, y, s)


def statistics_row(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> dict[str, float]:
    """Accuracy and the most frequent class's share of the predictions, with running and batch statistics."""
    row = {}
    for stats in ("running", "batch"):
        pred = predictions(model, x, batch_size=s.stat_batch, statistics=stats)
        row[f"{stats}_acc"] = float((pred == y).float().mean())
        row[f"{stats}_top"] = float(torch.bincount(pred).max()) / len(pred)
    return row


def mnist_verdict(q: dict[str, Any]) -> Verdict:
    """Does the running-statistics collapse appear on attack-built MNIST D_rand and not on the planted one?"""
    gaps = {}
    for kind in ("planted", "attack"):
        rows = q["rows"][kind]
        n = q["n"] * len(rows)
        run_acc, batch_acc = _mean([r["running_acc"] for r in rows]), _mean([r["batch_acc"] for r in rows])
        gaps[kind] = two_proportion_ci(batch_acc, n, run_acc, n)
    (ga, la, ha), (gp, lp, hp) = gaps["attack"], gaps["planted"]
    best = {
        kind: max(_mean([r["running_acc"] for r in q["rows"][kind]]), _mean([r["batch_acc"] for r in q["rows"][kind]]))
        for kind in ("planted", "attack")
    }
    void = None
    if not best["planted"] >= 0.5:
        void = f"the BN model did not learn the planted MNIST D_rand ({pct(best['planted'])} at best)"
    elif not best["attack"] >= 0.2:
        void = f"the BN model did not learn the attack-built MNIST D_rand ({pct(best['attack'])} at best)"
    se = math.sqrt(((ha - la) / (2 * 1.959964)) ** 2 + ((hp - lp) / (2 * 1.959964)) ** 2)
    d = ga - gp
    return judge(
        "MNIST D_rand: the BN running-statistics collapse comes from the attack-built data, not from D_rand itself",
        d,
        d - 1.959964 * se,
        d + 1.959964 * se,
        f"accuracy gain from batch statistics: attack-built {diff_text(ga, la, ha, percent=True)}, planted "
        f"{diff_text(gp, lp, hp, percent=True)}; difference {diff_text(d, d - 1.96 * se, d + 1.96 * se, percent=True)}.",
        protocol=f"BN smallcnn, {len(q['seeds'])} seed(s), {q['n']} test images each; Wald intervals of "
        "the pooled proportions (pairing of images ignored: conservative)",
        void_reason=void,
    )


# ---------------------------------------------------------------------------------------------
# Transfer with ground truth (claim 6)


@dataclass(frozen=True)
class TransferResult:
    """Success rates (source norm -> target norm, over seed pairs) and band energies per source norm."""

    success: dict[tuple[str, str], float]
    white_box: dict[str, float]
    per_seed: dict[str, list[float]]  # source norm -> per-seed mean success on the other seeds' models
    energy: dict[str, dict[str, float]]
    seeds: list[int]


def transfer(m: Measured, s: Settings, op_key: str, spec: PlantedSpec) -> TransferResult:
    views = _full_views(spec)
    x, y = views.agree_x[: s.transfer_size], views.agree_y[: s.transfer_size]
    seeds = sorted(
        sd
        for sd in set(m.seeds(op_key, s.norms[0])) & set(m.seeds(op_key, "none"))
        if all(m.values[(op_key, n, sd)]["agree_acc"] >= s.learned_min for n in s.norms)
    )
    models = {(n, sd): load_model(m.dirs[(op_key, n, sd)]) for n in s.norms for sd in seeds}
    clean = {k: predictions(mod, x) == y for k, mod in models.items()}
    rf_mask, nrf_mask = band_mask(spec.rf_band, spec.size), band_mask(spec.nrf_band, spec.size)
    nrf_t = make_templates(spec).nrf
    rates: dict[tuple[str, str], list[float]] = {}
    per_seed: dict[str, list[float]] = {n: [] for n in s.norms}
    white: dict[str, list[float]] = {n: [] for n in s.norms}
    energy: dict[str, list[BandEnergy]] = {n: [] for n in s.norms}
    if len(seeds) < 2:
        nan = {f: math.nan for f in ("rf_band", "nrf_band", "rest", "nrf_templates", "norm")}
        return TransferResult(
            {}, {n: math.nan for n in s.norms}, {n: [] for n in s.norms}, {n: dict(nan) for n in s.norms}, seeds
        )
    for (src_norm, src_seed), src in models.items():
        x_adv = pgd_l2(src, eps=s.transfer_eps, steps=s.pgd_steps)(x, y)
        white[src_norm].append(float((predictions(src, x_adv) != y).float().mean()))
        energy[src_norm].append(band_energy(x_adv - x, rf_mask=rf_mask, nrf_mask=nrf_mask, nrf_templates=nrf_t))
        mine = []
        for (tn, tsd), tgt in models.items():
            if tsd == src_seed:
                continue
            ok = clean[(tn, tsd)]
            fooled = (predictions(tgt, x_adv) != y) & ok
            rate = float(fooled.sum()) / max(int(ok.sum()), 1)
            rates.setdefault((src_norm, tn), []).append(rate)
            mine.append(rate)
        per_seed[src_norm].append(_mean(mine))
    energy_mean = {
        n: {
            f: _mean([getattr(e, f) for e in energy[n]])
            for f in ("rf_band", "nrf_band", "rest", "nrf_templates", "norm")
        }
        for n in s.norms
    }
    return TransferResult(
        {k: _mean(v) for k, v in rates.items()}, {n: _mean(v) for n, v in white.items()}, per_seed, energy_mean, seeds
    )


def transfer_verdict(t: TransferResult, s: Settings, void: str | None = None) -> Verdict:
    bn = s.norms[0]
    d, lo, hi = paired_ci(t.per_seed["none"], t.per_seed[bn])
    return judge(
        "Claim 6, adversarial examples from sources without normalization transfer better",
        d,
        lo,
        hi,
        f"mean success on the other seeds' models: from no-norm sources {cell(t.per_seed['none'])}, from "
        f"{name(bn)} sources {cell(t.per_seed[bn])}; paired difference {diff_text(d, lo, hi, percent=True)}.",
        protocol=f"PGD-L2 eps {s.transfer_eps:g}, {s.pgd_steps} steps, on {s.transfer_size} agree-view images of the "
        f"operating point; success = misclassified among the target's correctly classified images; "
        f"{len(t.seeds)} source seeds paired, targets = every model of the other seeds",
        void_reason=void,
    )


# ---------------------------------------------------------------------------------------------
# Plots


def plot_sweep(stem: Path, m: Measured, s: Settings) -> list[Path]:
    fig, axes = new_figure(1, 2, figsize=(10.5, 3.6))
    a_values = sorted({*s.sweep, s.a_n})
    for norm, marker in zip(s.norms, "os^v*D", strict=False):
        stats = [mean_ci(m.series(f"sweep-a{a:g}", norm, "rho"), proportion=False) for a in a_values]
        mean = [st[0] for st in stats]
        err = [
            [st[0] - st[1] if math.isfinite(st[1]) else 0 for st in stats],
            [st[2] - st[0] if math.isfinite(st[2]) else 0 for st in stats],
        ]
        axes[0][0].errorbar(a_values, mean, yerr=err, marker=marker, capsize=3, label=name(norm))
        acc = [_mean(m.series(f"sweep-a{a:g}", norm, "agree_acc")) for a in a_values]
        axes[0][1].plot(a_values, [100 * v for v in acc], marker=marker, label=name(norm))
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(a_values, [f"{a:g}" for a in a_values])
        ax.axvline(s.a_n, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("NRF norm a_n (L2)")
        ax.grid(alpha=0.3)
    axes[0][0].axhline(0, color="black", linewidth=0.8)
    axes[0][0].set_ylim(-1.05, 1.05)
    axes[0][0].set_ylabel("rho = F_N - F_R (mean, 95 % CI)")
    axes[0][0].set_title("reliance on swapped images (+1: NRF, -1: RF)", fontsize=9)
    axes[0][1].set_ylabel("agree-view accuracy (%)")
    axes[0][1].set_title("usefulness", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_learning_order(stem: Path, curves: dict[str, list[Curve]], s: Settings) -> list[Path]:
    fig, axes = new_figure(1, len(s.norms), figsize=(4.6 * len(s.norms), 3.4))
    for ax, norm in zip(axes[0], s.norms, strict=True):
        runs = curves[norm]
        length = min(len(c) for c in runs)
        epochs = [runs[0][i]["epoch"] for i in range(length)]
        for metric, label, style in (
            ("f_r", "F_R (follows the RF)", "-"),
            ("f_n", "F_N (follows the NRF)", "--"),
            ("agree_acc", "agree accuracy", ":"),
        ):
            mean = [100 * _mean([c[i][metric] for c in runs]) for i in range(length)]
            ax.plot(epochs, mean, linestyle=style, marker="o", markersize=2, label=label)
        ax.set_title(f"{name(norm)} ({len(runs)} seeds, mean)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_conflicting(stem: Path, m: Measured, s: Settings) -> list[Path]:
    fig, axes = new_figure(1, 1, figsize=(5.6, 3.6))
    ax = axes[0][0]
    for norm, color in zip(s.norms, ("C0", "C1", "C2", "C3", "C4", "C5"), strict=False):
        rows = [RunDir(m.dirs[("conflicting", norm, sd)]).read_metrics() for sd in m.seeds("conflicting", norm)]
        length = min(len(r) for r in rows)
        epochs = [rows[0][i]["epoch"] for i in range(length)]
        for col, label, style in (("clean_acc", "vs y (NRF)", "-"), ("shifted_acc", "vs y+1 (RF)", "--")):
            ax.plot(
                epochs,
                [100 * _mean([r[i][col] for r in rows]) for i in range(length)],
                linestyle=style,
                color=color,
                marker="o",
                markersize=2,
                label=f"{name(norm)} {label}",
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy on the agree view (%)")
    ax.set_title("planted conflicting set (mean over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_energy(stem: Path, t: TransferResult, s: Settings) -> list[Path]:
    fig, axes = new_figure(1, 1, figsize=(5.0, 3.2))
    ax = axes[0][0]
    bottom = [0.0] * len(s.norms)
    for part, label in (("rf_band", "RF band"), ("nrf_band", "NRF band"), ("rest", "rest")):
        vals = [100 * t.energy[n][part] for n in s.norms]
        ax.bar([name(n) for n in s.norms], vals, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("share of the perturbation's energy (%)")
    ax.set_title(f"PGD-L2 {s.transfer_eps:g} perturbations by source", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, stem)


# ---------------------------------------------------------------------------------------------
# The experiment


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, restoring the caller's setting: every run trains on one thread, in this
    process or in a worker, so its numbers do not depend on ``workers``."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_and_measure(run: PlantedRun, s: Settings, out: Path, progress: bool) -> tuple[Path, dict[str, float]]:
    """One run trained (or reused) and measured, on one torch thread (a worker's whole job)."""
    with torch_threads(1):
        run_dir = train_run(run, s, out, progress=progress)
        return run_dir, measure(run, run_dir, s)


def mnist_job(out: Path, s: Settings, seeds: Sequence[int], progress: bool) -> dict[str, Any]:
    with torch_threads(1):
        return mnist_question(out, s, seeds, progress=progress, log=lambda msg: None)


def train_all(
    runs: Sequence[PlantedRun],
    s: Settings,
    out: Path,
    seeds: Sequence[int],
    *,
    progress: bool,
    log: Log,
    started: float,
) -> tuple[Measured, dict[str, Any] | None]:
    """Train and measure every run (and the MNIST chain), in ``s.workers`` processes when > 1.

    Workers are spawned processes with one torch thread each; the MNIST chain (source, build, twins) goes
    first so it overlaps the planted runs. In a daemonic process (which may not have children) everything
    runs here.
    """
    m = Measured({}, {})
    done = 0

    def record(r: PlantedRun, result: tuple[Path, dict[str, float]]) -> None:
        nonlocal done
        m.dirs[(r.key, r.norm, r.seed)], m.values[(r.key, r.norm, r.seed)] = result
        done += 1
        if done % 10 == 0 or done == len(runs):
            log(f"planted: {done}/{len(runs)} runs ({time.perf_counter() - started:.0f} s)")

    parallel = s.workers > 1 and not multiprocessing.current_process().daemon
    if not parallel:
        for r in runs:
            record(r, train_and_measure(r, s, out, progress))
        return m, (mnist_job(out, s, seeds, progress) if s.mnist else None)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=s.workers, mp_context=ctx) as pool:
        mnist_future = pool.submit(mnist_job, out, s, list(seeds), False) if s.mnist else None
        futures = {pool.submit(train_and_measure, r, s, out, False): r for r in runs}
        for future in as_completed(futures):
            record(futures[future], future.result())
        mnist = mnist_future.result() if mnist_future is not None else None
    return m, mnist


def run(
    out_dir: Path,
    *,
    quick: bool = False,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    progress: bool = True,
    log: Log | None = print,
    settings: Settings | None = None,
) -> list[Section]:
    """Train every planted run under ``out_dir``, measure reliance, and return the report sections."""
    log = log or (lambda msg: None)
    s = settings or (QUICK if quick else FULL)
    if "none" not in s.norms or len(s.norms) < 2:
        raise NrflabError(
            "the planted experiment compares normalizations with 'none': norms must include it and one more"
        )
    seeds = list(dict.fromkeys(seeds))
    if quick:
        seeds = seeds[:2]
    if len(seeds) < 2:
        raise NrflabError("the planted experiment needs at least two seeds (paired intervals)")
    out = Path(out_dir)
    started = time.perf_counter()
    runs = plan(s, seeds)
    m, mnist = train_all(runs, s, out, seeds, progress=progress, log=log, started=started)
    op_key = f"sweep-a{s.a_n:g}"
    op_spec = next(r.spec for r in runs if r.key == op_key)
    with torch_threads(1):
        tr = transfer(m, s, op_key, op_spec)
    seconds = time.perf_counter() - started
    sections, verdicts = build_sections(out, s, seeds, m, op_key, op_spec, mnist, tr, seconds)
    atomic_write_json(
        out / "verdicts.json",
        {"settings": asdict(s), "seeds": seeds, "seconds": seconds, "verdicts": [v.to_dict() for v in verdicts]},
    )
    return sections


def build_sections(
    out: Path,
    s: Settings,
    seeds: list[int],
    m: Measured,
    op_key: str,
    op_spec: PlantedSpec,
    mnist: dict[str, Any] | None,
    tr: TransferResult,
    seconds: float,
) -> tuple[list[Section], list[Verdict]]:
    cap = capability(m, s)
    pref = [preference_verdict(m, s, norm, cap, op_key) for norm in s.norms if norm != "none"]
    ctl = control_verdicts(m, s, op_key, cap)
    shifts = control_shifts(m, s, op_key)
    order, curves = learning_order(m, s, op_key)
    drand = drand_verdicts(m, s)
    conf = conflicting_verdict(m, s)
    mv = mnist_verdict(mnist) if mnist else None
    tv = transfer_verdict(
        tr, s, None if len(tr.seeds) >= 2 else "fewer than two seeds where every operating-point model learned the set"
    )
    verdicts = [*pref, *ctl, *order, *drand, conf, *([mv] if mv else []), tv]

    settings_line = (
        f"Settings: planted {s.size}x{s.size}x3 images, {s.train} training images per set, {s.test} test images "
        f"per view, data seed {s.data_seed} (the same templates and images for every model); RF norm a_r = {s.a_r:g} "
        f"(low DCT band, shifted up to {op_spec.max_shift} px, +-{100 * op_spec.jitter:.0f} % jitter), NRF in the "
        f"high band at a fixed position, white noise {s.noise:g}; {s.arch} width {s.width}, SGD one-cycle peak "
        f"{s.lr:g}, batch {s.batch_size}, {s.epochs} epochs, no augmentation; seeds {', '.join(map(str, seeds))} "
        f"(paired across normalizations). Wall time {seconds / 60:.1f} min (finished runs are reused). Intervals: "
        "95 % t-intervals over seeds; the verdict rule of nrflab.stats."
    )
    # -- section 1: capability, sweep, claim 2, controls
    cap_rows = [
        [name(n)]
        + [
            f"{pct(statistics.median(cap[n][f]))} (" + ", ".join(pct(v, 0) for v in cap[n][f]) + ")"
            for f in ("rf", "nrf")
        ]
        + ["yes" if capable(cap[n]["rf"], s) and capable(cap[n]["nrf"], s) else "**no**"]
        for n in s.norms
    ]
    a_values = sorted({*s.sweep, s.a_n})
    sweep_rows = []
    for a in a_values:
        row = [f"{a:g}" + (" (operating point)" if a == s.a_n else ""), f"{a / math.sqrt(2):.2f}"]
        for n in s.norms:
            row += [
                cell(m.series(f"sweep-a{a:g}", n, "rho"), percent=False, signed=True),
                pct(_mean(m.series(f"sweep-a{a:g}", n, "agree_acc"))),
            ]
        sweep_rows.append(row)
    cross = {n: crossover(a_values, [_mean(m.series(f"sweep-a{a:g}", n, "rho")) for a in a_values]) for n in s.norms}
    op_rows = []
    for n in s.norms:
        op_rows.append(
            [name(n), pct(_mean(m.series(op_key, n, "agree_acc")))]
            + [cell(m.series(op_key, n, f"robust_{e:g}")) for e in s.eval_eps]
            + [
                cell(m.series(op_key, n, "ligs"), percent=False),
                cell(m.series(op_key, n, "f_r")),
                cell(m.series(op_key, n, "f_n")),
                cell(m.series(op_key, n, "rho"), percent=False, signed=True),
            ]
        )
    ctl_rows = []
    for key, label in (
        (op_key, f"operating point (a_n {s.a_n:g}, noise {s.noise:g})"),
        ("ctl-robust", f"robust: a_n {s.control_robust_a_n:g}, noise {s.control_noise:g}"),
        ("ctl-noise", f"less available: a_n {s.a_n:g}, noise {s.control_noise:g}"),
        ("ctl-band", f"{s.control_band} band: a_n {s.a_n:g}, noise {s.noise:g}"),
    ):
        ctl_rows.append(
            [label]
            + [cell(m.series(key, n, "rho"), percent=False, signed=True) for n in s.norms]
            + [pct(_mean(m.series(key, n, "agree_acc"))) for n in s.norms]
        )
    sweep_png = [p for p in plot_sweep(out / "planted_sweep", m, s) if p.suffix == ".png"]
    md1 = "\n\n".join(
        [
            "Every image carries a robust feature (RF) and a non-robust feature (NRF) of known classes "
            "(`nrflab.data.planted`); reliance is measured on swapped images (RF of class a, NRF of class b != a): "
            "F_R = share predicting a, F_N = share predicting b, rho = F_N - F_R (+1: follows the NRF only). "
            "All views keep the training images' statistics. " + settings_line,
            "**Capability controls** (each feature alone, the other absent; accuracy on its sufficiency view, "
            f"median and per seed; a normalization must reach {pct(s.capability_min, 0)} in the median seed on both for "
            f"a preference to be defined). Reliance comparisons below leave out seeds where a model stayed below "
            f"{pct(s.learned_min, 0)} agree accuracy:",
            markdown_table(["model", "RF alone", "NRF alone", "capable"], cap_rows),
            f"**NRF-norm sweep** (redundant set: both features predict the label; a_r = {s.a_r:g}, so swapping the RF "
            f"costs about {s.a_r / math.sqrt(2):.1f} in L2; the NRF's swap cost is about a_n / sqrt 2). Operating point "
            f"{len(m.seeds(op_key, s.norms[0]))} seeds, other points {min(s.sweep_seeds, len(seeds))}:",
            markdown_table(
                ["a_n", "NRF swap cost"] + [h for n in s.norms for h in (f"rho {name(n)}", f"agree acc {name(n)}")],
                sweep_rows,
            ),
            "Where mean rho crosses 0 (log-linear interpolation): "
            + ", ".join(f"{name(n)} a_n = {crossover_text(cross[n], a_values[0], a_values[-1])}" for n in s.norms)
            + ".",
            f"**Operating point** (a_n = {s.a_n:g}; robust accuracy and LIGS on {s.eval_size} agree-view images, "
            f"PGD-L2 {s.pgd_steps} steps):",
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
    sec1 = Section("Planted features: does BN shift reliance toward non-robust features? (claims 2-3)", md1, sweep_png)
    # -- section 2: learning order
    order_png = [p for p in plot_learning_order(out / "planted_learning_order", curves, s) if p.suffix == ".png"]
    md2 = "\n\n".join(
        [
            f"F_R and F_N of the operating-point models (a_n = {s.a_n:g}) every {s.probe_every} optimizer steps in the "
            f"first {s.probe_epochs} epochs (probes.csv of each run, {s.probe_size} swapped images), then after "
            "every epoch (metrics.csv).",
            "\n".join(verdict_line(v) for v in order),
        ]
    )
    sec2 = Section("Planted features: robust features first, then non-robust ones? (claim 4)", md2, order_png)
    # -- section 3: D_rand, conflicting, MNIST
    fs_rows = []
    for a in s.drand_a_n:
        for n in s.norms:
            fs_rows.append(
                [
                    f"D_rand, a_n {a:g}",
                    name(n),
                    cell(m.series(f"drand-a{a:g}", n, "agree_acc")),
                    cell(m.series(f"drand-a{a:g}", n, "rho"), percent=False, signed=True),
                    "",
                ]
            )
    for n in s.norms:
        fs_rows.append(
            [
                f"conflicting, a_n {s.conflicting_a_n:g}",
                name(n),
                cell(m.series("conflicting", n, "acc_y")),
                "",
                cell(m.series("conflicting", n, "acc_y1")),
            ]
        )
    conf_png = [p for p in plot_conflicting(out / "planted_conflicting", m, s) if p.suffix == ".png"]
    parts3 = [
        "Planted D_rand: the RF class is independent of the label, the NRF is the label's (the planted counterpart "
        "of Ilyas et al.'s D_rand). Planted conflicting set: the RF of class y-1, the NRF and the label y "
        "(accuracy vs y = follows the NRF, vs y+1 = follows the RF). Evaluated on the agree view, which keeps "
        "the training statistics (no BN running-statistics mismatch).",
        markdown_table(["set", "model", "accuracy (vs y)", "rho", "accuracy vs y+1"], fs_rows),
        "\n".join(verdict_line(v) for v in [*drand, conf]),
    ]
    if mnist and mv:
        mrows = []
        for kind, label in (
            ("planted", f"planted MNIST D_rand (a_n {s.mnist_a_n:g}), agree view"),
            ("attack", "attack-built MNIST D_rand, clean mnist5k test"),
        ):
            rows = mnist["rows"][kind]
            n_img = mnist["n"] * len(rows)
            for stats in ("running", "batch"):
                acc = _mean([r[f"{stats}_acc"] for r in rows])
                lo, hi = wilson(round(acc * n_img), n_img)
                mrows.append(
                    [label, stats, f"{pct(acc)} {fmt_interval(lo, hi)}", pct(_mean([r[f"{stats}_top"] for r in rows]))]
                )
        parts3 += [
            f"**The MNIST question.** A BN smallcnn trained on the planted MNIST D_rand (the digit is the RF, rescaled "
            f"to [{mnist['spec'].digit_margin:.2f}, {1 - mnist['spec'].digit_margin:.2f}] so the NRF survives "
            f"clipping; the NRF of norm {s.mnist_a_n:g} carries the label) and one trained on the attack-built "
            f"MNIST D_rand (`nrflab.features`, targeted PGD-L2 eps {s.mnist_build_eps:g}, {s.mnist_build_steps} steps "
            f"from a BN source trained {s.mnist_source_epochs} epochs; {s.mnist_train} images), each evaluated with "
            f"BN's running statistics and with each batch of {s.stat_batch} test images' own statistics "
            f"(seeds {', '.join(map(str, mnist['seeds']))}, pooled):",
            markdown_table(
                ["training set / test set", "BN statistics", "accuracy [Wilson 95 %]", "most frequent class share"],
                mrows,
            ),
            verdict_line(mv),
        ]
    sec3 = Section(
        "Planted features: D_rand, conflicting set and the MNIST question (claim 5, Figure 6)",
        "\n\n".join(parts3),
        conf_png,
    )
    # -- section 4: transfer
    tnorms = s.norms
    t_rows = [
        [name(src)]
        + [pct(tr.success.get((src, tgt), math.nan)) for tgt in tnorms]
        + [pct(tr.white_box[src])]
        + [pct(tr.energy[src][f]) for f in ("rf_band", "nrf_band", "rest", "nrf_templates")]
        + [num(tr.energy[src]["norm"], 2)]
        for src in tnorms
    ]
    energy_png = [p for p in plot_energy(out / "planted_transfer_energy", tr, s) if p.suffix == ".png"]
    md4 = "\n\n".join(
        [
            f"Sources and targets: the operating-point models (a_n = {s.a_n:g}). Each source's PGD-L2 adversarial "
            f"examples (eps {s.transfer_eps:g}) are evaluated on every model of the other seeds; each perturbation is "
            "split by the orthonormal DCT into its energy in the RF band, the NRF band and the rest, and the share "
            "along the NRF templates themselves.",
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
    sec4 = Section("Planted features: transfer with ground truth (claim 6)", md4, energy_png)
    return [sec1, sec2, sec3, sec4], verdicts


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


__all__ = [
    "FULL",
    "QUICK",
    "PlantedRun",
    "Settings",
    "capability",
    "measure",
    "plan",
    "reliance_curve",
    "run",
    "transfer",
]
