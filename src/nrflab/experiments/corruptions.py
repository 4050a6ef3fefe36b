"""Corruption robustness (the earlier version's claim 7): BN lowers robustness to common corruptions.

Every standard and adversarially trained model of the zoo is evaluated on the same fixed test images under
CIFAR-10-C-style corruptions (:mod:`nrflab.measure.corruptions`) at the chosen severities. Because clean
accuracies differ, the claim is judged on each model's *drop*: clean accuracy minus mean corruption
accuracy, per image, BN's drop minus no BN's.

Beside it, each BN model's mean corruption accuracy after its BN statistics are re-estimated on
``adapt_samples`` training images shifted by the same corruption and severity (Benz et al., WACV 2021:
n = 32; :mod:`nrflab.measure.bn_shift`); a model without BN has no statistics to adapt (n/a). One cached
measurement task per BN model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from nrflab.core.fmt import markdown_table, num, pct
from nrflab.core.stats import Verdict, finite_mean
from nrflab.data import load_dataset
from nrflab.experiments.analysis import finish_figure
from nrflab.experiments.claims import judge_claim, register_claim
from nrflab.experiments.engine import CallTask, Task
from nrflab.experiments.evidence import compare
from nrflab.experiments.guard import check
from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import AnalysisContext
from nrflab.experiments.zoo import (
    NormsSettings,
    Zoo,
    ZooView,
    plan_with_corruptions,
    tasks,
    zoo_experiment,
)
from nrflab.measure.predict import PAPER
from nrflab.report.document import Section, verdict_line
from nrflab.report.plots import new_figure

DROP = register_claim(
    id="corruptions.drop",
    experiment="corruptions",
    family="claim 7: corruptions",
    text="BN lowers corruption robustness (larger drop from clean to corrupted accuracy)",
    paper="Claim 7 (earlier version): BN lowers robustness to common corruptions (CIFAR-10-C)",
    quantity="drop(BN) - drop(no BN); drop = clean acc - mean corruption acc over the corruptions and severities, "
    "per seed, on the same fixed test images",
    unit="points",
    protocol=PAPER.title,
    models=("standard BN", "standard no BN"),
    guard="both learned (clean test images, paper protocol); comparable usefulness",
)


def adapted_corruption_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    pool: torch.Tensor,
    *,
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
) -> dict[str, float]:
    """Per ``corruption@severity``: accuracy on ``(x, y)`` corrupted as the cached outcomes were (batches of 256,
    seed + the batch's start), with BN statistics re-estimated on all of ``pool`` (clean adaptation images,
    corrupted the same way with seed + 1; no labels). ``model`` is unchanged."""
    from nrflab.measure.bn_shift import adapted_accuracy
    from nrflab.measure.corruptions import corrupt

    table: dict[str, float] = {}
    for name in corruptions:
        for severity in severities:
            shifted = torch.cat([corrupt(x[i : i + 256], name, severity, seed=seed + i) for i in range(0, len(x), 256)])
            adapt = corrupt(pool, name, severity, seed=seed + 1)
            _, adapted = adapted_accuracy(model, shifted, y, adapt_images=adapt)
            table[f"{name}@{severity}"] = float(adapted.mean())
    return table


def _adapt_cache(run_dir: str, s: NormsSettings, seed: int) -> Path:
    from nrflab.features import sha256_file
    from nrflab.runs.rundir import RunDir

    key = [s.dataset, s.test_size, s.corruptions, s.severities, s.adapt_samples, seed, 1]
    h = hashlib.sha256(json.dumps(key).encode() + sha256_file(RunDir(run_dir).model_path).encode())
    return Path(run_dir) / f"bn_adapted_{h.hexdigest()[:16]}.json"


def measure_adapted(*, run_dir: str, settings: dict[str, object], seed: int, progress: bool = False) -> str:
    """What the engine task calls: :func:`adapted_corruption_accuracy` of a BN run, cached in its directory."""
    from nrflab.core.io import atomic_write_json
    from nrflab.core.validation import resolve_device
    from nrflab.experiments.analysis import test_images
    from nrflab.measure.metrics import dataset_tensors
    from nrflab.models.checkpoint import load_model

    s = NormsSettings.model_validate(settings)
    path = _adapt_cache(run_dir, s, seed)
    if not path.is_file():
        bundle = load_dataset(s.dataset, root=s.data_root)
        x, y = test_images(bundle, s.test_size)
        train, _ = dataset_tensors(bundle.train)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: s.adapt_samples]
        model = load_model(Path(run_dir), resolve_device(s.device)).eval()
        table = adapted_corruption_accuracy(
            model, x, y, train[pick], corruptions=s.corruptions, severities=s.severities, seed=seed
        )
        atomic_write_json(path, table)
    return run_dir


def adapted_done(*, run_dir: str, settings: dict[str, object], seed: int) -> bool:
    from nrflab.runs.rundir import RunDir

    s = NormsSettings.model_validate(settings)
    return RunDir(run_dir).model_path.is_file() and _adapt_cache(run_dir, s, seed).is_file()


def plan_corruptions(s: NormsSettings, home: Path) -> list[Task]:
    """The zoo's runs evaluated under the corruptions, and each BN run's adapted accuracies."""
    adapt = [
        CallTask(
            f"{t.key}#bn-adapted",
            "nrflab.experiments.corruptions:measure_adapted",
            {"run_dir": t.key, "settings": s.model_dump(), "seed": seed},
            after=(t.key,),
            done_target="nrflab.experiments.corruptions:adapted_done",
        )
        for (_, norm, seed), t in tasks(s, home).items()
        if norm == "bn" and s.adapt_samples > 0
    ]
    return [*plan_with_corruptions(s, home), *adapt]


def _adapted_mean(zoo: Zoo, kind: str, norm: str) -> str:
    """Mean corruption accuracy over seeds with BN statistics adapted (n/a without BN or adaptation)."""
    if norm != "bn" or zoo.s.adapt_samples == 0:
        return "n/a"
    means = []
    for run, seed in zip(zoo.run_dirs(kind, norm), zoo.s.seeds, strict=True):
        path = _adapt_cache(run, zoo.s, seed)
        if not path.is_file():
            measure_adapted(run_dir=run, settings=zoo.s.model_dump(), seed=seed)
        means.append(finite_mean(list(json.loads(path.read_text()).values())))
    return pct(finite_mean(means))


def _models(s: NormsSettings) -> dict[str, tuple[str, str]]:
    return {f"standard {n}": ("std", n) for n in s.norms} | {f"AT {n}": ("at", n) for n in s.at_norms}


def analyze(s: NormsSettings, ctx: AnalysisContext) -> list[Section]:
    zoo = Zoo(s, ctx.home)
    models = _models(s)
    adapted = f"mean corruption acc, BN statistics adapted (n = {s.adapt_samples})"
    header = ["model", "clean acc", "mean corruption acc", adapted, "relative (mean / clean)", "drop (points)"]
    header += list(s.corruptions)
    body = []
    for name, (kind, norm) in models.items():
        clean = finite_mean([o.accuracy() for o in zoo.outcomes(kind, norm)])
        cor = zoo.corrupted(kind, norm)
        mean = finite_mean([float(o.corruption.mean()) for o in cor if o.corruption is not None])
        per = [
            finite_mean([finite_mean([o.corruption_table[f"{c}@{sev}"] for sev in s.severities]) for o in cor])
            for c in s.corruptions
        ]
        body.append(
            [
                name,
                pct(clean),
                pct(mean),
                _adapted_mean(zoo, kind, norm),
                num(mean / clean if clean > 0 else float("nan")),
                f"{100 * (clean - mean):.1f}",
            ]
            + [pct(v) for v in per]
        )
    verdicts = claims(s, zoo)
    images = _plot_severity(ctx.home / "corruption_severity", zoo, models, s)
    md = "\n\n".join(
        [
            f"Accuracy on the same {zoo.n} fixed test images under {len(s.corruptions)} CIFAR-10-C corruptions at "
            f"severities {', '.join(map(str, s.severities))} (nrflab.measure.corruptions, CIFAR parameters applied unscaled to "
            f"{'x'.join(map(str, zoo.bundle.input_shape[1:]))} images); means over seeds. The relative accuracy divides by "
            "each model's own clean accuracy; the drop is clean minus mean corruption accuracy. Adapted: BN's "
            f"statistics re-estimated on {s.adapt_samples} training images shifted by the same corruption and "
            "severity, no labels (WACV 2021); n/a for a model without BN.",
            markdown_table(header, body),
            "**Claims**",
            "\n".join(verdict_line(v) for v in verdicts),
        ]
    )
    return [Section("Corruption robustness", md, [p for p in images if p.suffix == ".png"], verdicts)]


def claims(s: NormsSettings, zoo: ZooView) -> list[Verdict]:
    """BN's drop from clean to corrupted accuracy against no BN's, per seed (standard training)."""
    if not ("bn" in s.norms and "none" in s.norms):
        return []
    drops = {}
    for n in ("bn", "none"):
        clean, cor = zoo.outcomes("std", n), zoo.corrupted("std", n)
        drops[n] = [c.correct() - _required(k.corruption) for c, k in zip(clean, cor, strict=True)]
    c = compare(drops["bn"], drops["none"], seeds=s.seeds)
    hb, hn = zoo.health("std", "bn", "standard BN"), zoo.health("std", "none", "standard no BN")
    guard = check(learners=[*hb, *hn], comparable=[(hb, hn)])
    text = f"Drop from clean to mean corruption accuracy: BN {100 * c.a:.1f} points, no BN {100 * c.b:.1f} points."
    return [judge_claim(DROP, c, text, guard=guard, seeds=s.seeds)]


def _required(values: torch.Tensor | None) -> torch.Tensor:
    if values is None:  # pragma: no cover - measure() always fills it when corruptions are given
        raise ValueError("no corruption outcomes")
    return values


def _plot_severity(stem: Path, zoo: Zoo, models: dict[str, tuple[str, str]], s: NormsSettings) -> list[Path]:
    """Mean corruption accuracy against severity, one line per model (first seed)."""
    fig, axes = new_figure(figsize=(5.5, 3.6))
    ax = axes[0][0]
    for name, (kind, norm) in models.items():
        table = zoo.corrupted(kind, norm)[0].corruption_table
        per = [finite_mean([table[f"{c}@{sev}"] for c in s.corruptions]) for sev in s.severities]
        ax.plot(
            list(s.severities),
            [100 * v for v in per],
            marker="o",
            linestyle="--" if "none" in name else "-",
            label=name,
        )
    ax.set_xticks(list(s.severities))
    return finish_figure(fig, ax, stem, xlabel="severity", ylabel="mean corruption accuracy (%)", legend_size=7)


SPEC = register_experiment(
    zoo_experiment(
        name="corruptions",
        summary="corruption robustness of the standard and adversarially trained zoo (claim 7)",
        plan=plan_corruptions,
        analyze=analyze,
        order=40,
        claims=("7",),
    )
)

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
