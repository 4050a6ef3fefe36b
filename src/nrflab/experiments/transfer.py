"""Paper claim 6 at CPU scale: robust features transfer better, so adversarial examples from sources
without BN, and from early-stopped sources, fool other models more often.

A zoo (at CPU scale on mnist5k) -- BN and no-BN models of two archs, several seeds, checkpoints kept every epoch --
gives a full transfer matrix (PGD-Linf eps 0.1): every final model attacks every other one, and the
kept checkpoints of every epoch attack the final models, for the success-vs-source-epoch curve.

Both claims are judged by the one rule of :mod:`nrflab.core.stats`: agree or disagree only when the 95 %
interval of the claim-oriented difference excludes zero (no-BN minus BN source; early checkpoint minus
final model; the interval crossed over seeds and the shared targets:
:func:`nrflab.experiments.transfer_claims.crossed_interval`), otherwise inconclusive; and through the validity
guard: a source that did not learn, or BN and no-BN sources of very unequal usefulness, make them void.

Settings (:class:`~nrflab.experiments.transfer_settings.TransferExperimentSettings`) have ``cpu``, ``paper``
and ``quick`` presets like every registered experiment; the zoo's runs are engine tasks (trained in parallel
where workers allow). This module plans the zoo and the matrix, checks the zoo's health and judges the claims;
:mod:`~nrflab.experiments.transfer_sections` reads the claims' inputs, the early-stop curve and the sections'
Markdown from the matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from nrflab.core.stats import Verdict
from nrflab.data import DatasetBundle
from nrflab.experiments.analysis import load_bundle, test_images
from nrflab.experiments.claims import with_family
from nrflab.experiments.engine import CallTask, Task, TrainTask
from nrflab.experiments.evidence import measure
from nrflab.experiments.guard import Health, health
from nrflab.experiments.guard import check as guard_check
from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import AnalysisContext, ExperimentSpec
from nrflab.experiments.transfer_claims import EARLY_STOP, early_stop_claim, no_bn_claim
from nrflab.experiments.transfer_sections import (
    ZooRun,
    early_markdown,
    early_name,
    early_vs_final,
    epoch_curve,
    matrix_markdown,
    plot_curve,
    twins,
)
from nrflab.experiments.transfer_settings import (
    CPU,
    PAPER_SCALE,
    QUICK_SETTINGS,
    TransferExperimentSettings,
    ZooArch,
)
from nrflab.report.document import Section, verdict_line
from nrflab.training.task import subset_bundle
from nrflab.transfer import (
    EarlyStop,
    ModelRef,
    OutputPaths,
    TransferResult,
    compute_matrix,
    prepare_matrix,
    resolve_model,
    write_outputs,
)
from nrflab.transfer.store import open_store


def _zoo_tasks(s: TransferExperimentSettings, home: Path) -> dict[tuple[str, str, int], TrainTask]:
    tasks = {}
    for zoo_arch in [ZooArch(arch=s.arch, width=s.width), *s.other_archs]:
        common = s.model_copy(update={"arch": zoo_arch.arch, "width": zoo_arch.width})
        for norm in s.norms:
            for seed in s.seeds:
                cfg = common.train_config(s.zoo, norm=norm, seed=seed)
                tasks[(zoo_arch.arch, norm, seed)] = TrainTask(
                    str(home / "runs" / f"{zoo_arch.arch}_{norm}_s{seed}"), cfg.model_dump(), train_size=s.train_size
                )
    return tasks


def plan(s: TransferExperimentSettings, home: Path) -> list[Task]:
    """The zoo's runs, then the transfer matrix (crafting and evaluating every pair) as one task."""
    runs = list(_zoo_tasks(s, home).values())
    matrix = CallTask(
        f"{home / 'transfer'}#matrix",
        "nrflab.experiments.transfer:compute_transfer",
        {"home": str(home), "settings": s.model_dump()},
        after=tuple(t.key for t in runs),
    )
    return [*runs, matrix]


def compute_transfer(*, home: str, settings: dict[str, object], progress: bool = False) -> str:
    """Compute (or complete) the transfer matrix of the zoo under ``home`` (an engine task; the analysis
    reads the store it fills)."""
    _matrix(TransferExperimentSettings.model_validate(settings), Path(home), progress)
    return home


def _matrix(
    s: TransferExperimentSettings, home: Path, progress: bool
) -> tuple[TransferResult, TransferResult, OutputPaths, list[ZooRun], list[ModelRef], list[ModelRef]]:
    """The full result (finals and kept checkpoints as sources), the final models' matrix and its files."""
    tasks = _zoo_tasks(s, home)
    bundle = subset_bundle(load_bundle(s), s.train_size, 0)
    zoo = [ZooRun(Path(t.key), arch, norm, seed) for (arch, norm, seed), t in tasks.items()]
    finals = [resolve_model(r.path) for r in zoo]
    earlier = [resolve_model(r.path, epoch=e) for r in zoo for e in _kept(s)]
    transfer_dir = home / "transfer"
    job = prepare_matrix([*finals, *earlier], finals, bundle, s.attack, limit=s.limit)
    with open_store(transfer_dir, job.settings, resume=True, overwrite=False) as store:
        result = compute_matrix(job, store, progress=progress)
        matrix_only = result.select(f.name for f in finals)
        paths = write_outputs(matrix_only, transfer_dir)
    return result, matrix_only, paths, zoo, finals, earlier


def _kept(s: TransferExperimentSettings) -> list[int]:
    """The epochs before the last whose checkpoints the zoo keeps."""
    every = s.zoo.keep_checkpoints or 0
    epochs = int(s.zoo.epochs or 1)
    return list(range(every, epochs, every)) if every else []


NOT_TESTED = "not tested (no checkpoint before the last epoch)"


def check(s: TransferExperimentSettings) -> list[tuple[str, str]]:
    """Up front: the early-stop claim needs a kept checkpoint before the last epoch (unless there is only
    one epoch: then the claim is reported as not tested), and an ``epoch=K`` rule a kept epoch."""
    if s.zoo.epochs is None:
        return []
    kept, rule = _kept(s), EarlyStop.parse(s.early_stop)
    if s.zoo.epochs > 1 and not kept:
        return [
            (
                f"zoo.keep_checkpoints={s.zoo.keep_checkpoints or 0} keeps no checkpoint before the last epoch "
                f"({s.zoo.epochs}), which the early-stop claim needs",
                "zoo.keep_checkpoints=1",
            )
        ]
    if rule.kind == "epoch" and int(rule.value) not in [*kept, s.zoo.epochs]:
        return [(f"early_stop {rule} is not a kept epoch (kept: {kept or 'none'})", "early_stop=frac=0.9")]
    return []


def analyze(s: TransferExperimentSettings, ctx: AnalysisContext) -> list[Section]:
    """The matrix, the early-stop curve and the two claims (through the validity guard)."""
    home = ctx.home
    result, matrix_only, paths, zoo, finals, earlier = _matrix(s, home, ctx.progress)
    bundle = subset_bundle(load_bundle(s), s.train_size, 0)
    epochs = int(s.zoo.epochs or 1)
    curve = epoch_curve(result, finals, earlier, epochs)
    curve_img = plot_curve(curve, home / "transfer_vs_source_epoch")
    rule = EarlyStop.parse(s.early_stop)
    early = early_vs_final(result, zoo, finals, epochs, rule) if _kept(s) else []
    protocol = f"attack {s.attack} (untargeted), {result.settings.num_samples} {s.dataset} test images, {epochs} epochs"
    healths = _source_health(s, bundle, zoo)
    bn = [h for r, h in zip(zoo, healths, strict=True) if r.norm == s.norms[0]]
    nobn = [h for r, h in zip(zoo, healths, strict=True) if r.norm == s.norms[1]]
    verdicts = [
        no_bn_claim(
            twins(matrix_only, zoo, finals),
            guard=guard_check(learners=healths, comparable=[(bn, nobn)]),
            protocol=protocol,
        )
    ]
    if _kept(s):
        checkpoints = _checkpoint_health(s, bundle, zoo, [r.epoch for r in early])
        guard = guard_check(learners=[*healths, *checkpoints])
        verdicts.append(early_stop_claim(early, guard=guard, early=early_name(rule), protocol=protocol))
    else:
        verdicts.append(
            with_family(
                Verdict(
                    EARLY_STOP.text, "not tested", NOT_TESTED.capitalize() + ".", protocol=protocol, reason=NOT_TESTED
                ),
                EARLY_STOP,
            )
        )
    return [
        Section(
            "Transfer matrix (BN vs no-BN sources)",
            matrix_markdown(matrix_only, s.dataset),
            [paths.transfer_success_png, paths.target_accuracy_png],
        ),
        Section("Early-stopped sources", early_markdown(curve, early, rule), [curve_img]),
        Section("Claims: transferability", "\n".join(verdict_line(v) for v in verdicts), verdicts=verdicts),
    ]


def _source_health(s: TransferExperimentSettings, bundle: DatasetBundle, zoo: Sequence[ZooRun]) -> list[Health]:
    x, y = test_images(bundle, s.limit)
    return [
        health(
            f"{r.arch}/{r.norm} seed {r.seed}",
            r.path,
            measure(r.path, x, y, device=s.device),
            num_classes=bundle.num_classes,
        )
        for r in zoo
    ]


def _checkpoint_health(
    s: TransferExperimentSettings, bundle: DatasetBundle, zoo: Sequence[ZooRun], epochs: Sequence[int]
) -> list[Health]:
    """The health of each run's early checkpoint (``epochs``: each run's early epoch) on the attacked test
    images, its training accuracy from that epoch's metrics row."""
    from nrflab.core.modules import model_device
    from nrflab.measure.health import top_class
    from nrflab.measure.predict import predict
    from nrflab.runs.rundir import RunDir

    x, y = test_images(bundle, s.limit)
    out = []
    for r, epoch in zip(zoo, epochs, strict=True):
        model = resolve_model(r.path, epoch=epoch).load(s.device if s.device != "auto" else "cpu")
        pred = predict(model, x.to(model_device(model))).cpu()
        rows = [m for m in RunDir(r.path).read_metrics() if int(m.get("epoch", -1)) == epoch]
        train_acc = float(rows[0].get("train_acc", math.nan)) if rows else math.nan
        loss = float(rows[0].get("train_loss", math.nan)) if rows else math.nan
        top, share = top_class(pred)
        acc = float((pred == y.cpu()).float().mean())
        finite = all(math.isfinite(v) for v in (train_acc, loss, acc))
        name = f"{r.arch}/{r.norm} seed {r.seed} at epoch {epoch}"
        out.append(Health(name, bundle.num_classes, train_acc, acc, top, share, finite, "paper"))
    return out


SPEC = register_experiment(
    ExperimentSpec(
        name="transfer",
        summary="transfer matrix of a BN/no-BN zoo and early-stopped sources (both transfer boosts, claim 6)",
        settings_type=TransferExperimentSettings,
        presets={"cpu": CPU, "paper": PAPER_SCALE, "quick": QUICK_SETTINGS},
        plan=plan,
        analyze=analyze,
        order=60,
        claims=("6",),
        epoch_keys=("zoo.epochs",),
        check=check,
    )
)
