"""Paper claim 6 at CPU scale: robust features transfer better, so adversarial examples from sources
without BN, and from early-stopped sources, fool other models more often.

A zoo on mnist5k -- BN and no-BN models of two archs, several seeds, checkpoints kept every epoch --
gives a full transfer matrix (PGD-Linf eps 0.1): every final model attacks every other one, and the
kept checkpoints of every epoch attack the final models, for the success-vs-source-epoch curve.

Both claims are judged by the one rule of :mod:`nrflab.stats`: agree or disagree only when the 95 %
interval of the claim-oriented difference excludes zero (no-BN minus BN source, paired by arch and
seed; early checkpoint minus final model, per run), otherwise inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..data import ImageTensorDataset, load_dataset
from ..report import Section, markdown_table, verdict_line
from ..stats import Verdict, judge, mean_ci, paired_ci
from ..training import make_config, train_or_reuse
from ..transfer import (
    EarlyStop,
    ModelRef,
    TransferResult,
    compute_matrix,
    fmt_ci,
    fmt_pct,
    prepare_matrix,
    resolve_model,
    write_outputs,
)
from ..transfer.outputs import ci_phrase, fmt_points
from ..transfer.results import Interval
from ..transfer.store import open_store


@dataclass(frozen=True)
class ZooSetup:
    """The zoo and the attack: (arch, width) pairs, epochs, training-set size (None: all), attacked test
    images, and the attack spec."""

    archs: tuple[tuple[str, float], ...]
    epochs: int
    train_size: int | None
    limit: int
    attack: str


FULL = ZooSetup(archs=(("smallcnn", 0.5), ("vgg11", 0.25)), epochs=6, train_size=None, limit=500,
                attack="pgd-linf:eps=0.1,step=0.025,steps=10")
QUICK = ZooSetup(archs=(("smallcnn", 0.5),), epochs=2, train_size=1000, limit=100,
                 attack="pgd-linf:eps=0.1,step=0.04,steps=5")
EARLY_RULE = EarlyStop("frac", 0.9)
NO_BN_CLAIM = "RFs transfer better: adversarial examples from sources without BN transfer better"
EARLY_CLAIM = "Early-stopped sources (mostly RFs) transfer better than the final model"


@dataclass(frozen=True)
class ZooRun:
    """One trained model of the zoo."""

    path: Path
    arch: str
    norm: str
    seed: int


@dataclass(frozen=True)
class CurvePoint:
    """One source epoch of a group: mean transfer success over seeds (t-interval) and mean clean accuracy."""

    epoch: int
    mean_success: float
    ci: Interval
    clean_accuracy: float


@dataclass(frozen=True)
class EarlyVsFinal:
    """One run: mean transfer success of its early-stopped checkpoint and of its final model."""

    run: str
    group: str
    epoch: int
    final_epoch: int
    early: float
    final: float

    @property
    def gain(self) -> float:
        return self.early - self.final


def run(out_dir: Path, *, quick: bool = False, seeds: Sequence[int] = (0, 1), progress: bool = True) -> list[Section]:
    """Train the zoo (reusing finished runs), compute the matrix and the early-stop curve, and report."""
    out_dir = Path(out_dir)
    setup = QUICK if quick else FULL
    bundle = load_dataset("mnist5k")
    if setup.train_size:
        train = bundle.train
        assert isinstance(train, ImageTensorDataset)
        bundle = replace(bundle, train=train.subset(list(range(setup.train_size))))
    zoo = []
    for arch, width in setup.archs:
        for norm in ("bn", "none"):
            for seed in seeds:
                run_dir = out_dir / "runs" / f"{arch}_{norm}_s{seed}"
                cfg = make_config(dataset="mnist5k", arch=arch, norm=norm, width=width, epochs=setup.epochs,
                                  seed=seed, eval_attacks=[], ligs=False, keep_checkpoints=1, device="cpu")
                zoo.append(ZooRun(train_or_reuse(cfg, run_dir, progress=progress, bundle=bundle), arch, norm, seed))
    finals = [resolve_model(r.path) for r in zoo]
    earlier = [resolve_model(r.path, epoch=e) for r in zoo for e in range(1, setup.epochs)]
    transfer_dir = out_dir / "transfer"
    job = prepare_matrix([*finals, *earlier], finals, bundle, setup.attack, limit=setup.limit)
    with open_store(transfer_dir, job.settings, resume=True, overwrite=False) as store:
        result = compute_matrix(job, store, progress=progress)
        matrix_only = result.select(f.name for f in finals)
        paths = write_outputs(matrix_only, transfer_dir)
    curve = _epoch_curve(result, finals, earlier, setup.epochs)
    curve_img = _plot_curve(curve, out_dir / "transfer_vs_source_epoch")
    early = _early_vs_final(result, zoo, finals, setup.epochs)
    protocol = (f"attack {setup.attack} (untargeted), {result.settings.num_samples} mnist5k test images, "
                f"seeds {', '.join(map(str, seeds))}, {setup.epochs} epochs")
    verdicts = [no_bn_claim(matrix_only, _twins(zoo, finals), protocol=protocol),
                early_stop_claim(early, protocol=protocol)]
    return [
        Section("Transfer matrix (BN vs no-BN sources)", _matrix_markdown(matrix_only),
                [paths.transfer_success_png, paths.target_accuracy_png]),
        Section("Early-stopped sources", _early_markdown(curve, early), [curve_img]),
        Section("Claims: transferability", "\n".join(verdict_line(v) for v in verdicts)),
    ]


def _twins(zoo: Sequence[ZooRun], finals: Sequence[ModelRef]) -> list[tuple[str, str]]:
    """(BN source, no-BN source) names of the same arch and seed."""
    by_key = {(r.arch, r.norm, r.seed): ref.name for r, ref in zip(zoo, finals, strict=True)}
    return [(name, by_key[(arch, "none", seed)]) for (arch, norm, seed), name in by_key.items()
            if norm == "bn" and (arch, "none", seed) in by_key]


def _base_group(group: str) -> str:
    return group.split("@", 1)[0]


def _epoch_curve(result: TransferResult, finals: list[ModelRef], earlier: list[ModelRef],
                 epochs: int) -> list[tuple[str, list[CurvePoint]]]:
    """Per group: mean success over seeds (t-interval) and mean source clean accuracy for epochs 1..E."""
    per = {r.source: r.mean_success for r in result.per_source()}
    by_group: dict[str, list[tuple[int, float, float]]] = {}
    for ref in [*earlier, *finals]:
        epoch = ref.epoch if ref.epoch is not None else epochs
        by_group.setdefault(_base_group(ref.group), []).append(
            (epoch, per[ref.name], result.source(ref.name).clean_accuracy))
    out = []
    for group, pts in by_group.items():
        rows = []
        for e in sorted({p[0] for p in pts}):
            at = [p for p in pts if p[0] == e]
            m, lo, hi = mean_ci([p[1] for p in at])
            rows.append(CurvePoint(e, m, (lo, hi), sum(p[2] for p in at) / len(at)))
        out.append((group, rows))
    return out


def _plot_curve(curve: list[tuple[str, list[CurvePoint]]], stem: Path) -> Path:
    from ..plots import NORM_STYLE, new_figure, save_figure

    fig, axes = new_figure(figsize=(5.6, 3.6))
    ax = axes[0][0]
    for group, rows in curve:
        e = [r.epoch for r in rows]
        line, = ax.plot(e, [100 * r.mean_success for r in rows], marker="o",
                        linestyle=NORM_STYLE.get(group.split("/")[-1], "-"), label=group)
        lo = [100 * (r.ci[0] if math.isfinite(r.ci[0]) else r.mean_success) for r in rows]
        hi = [100 * (r.ci[1] if math.isfinite(r.ci[1]) else r.mean_success) for r in rows]
        ax.fill_between(e, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("source epoch (checkpoint)")
    ax.set_ylabel("transfer success % (mean over targets)")
    ax.set_title("transfer success vs source epoch (mean over seeds, 95 % CI)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)[0]


def _early_vs_final(result: TransferResult, zoo: Sequence[ZooRun], finals: list[ModelRef],
                    epochs: int) -> list[EarlyVsFinal]:
    """Per run: the early-stopped checkpoint (rule EARLY_RULE) vs the final model, same targets."""
    per = {r.source: r.mean_success for r in result.per_source()}
    rows = []
    for run_info, final in zip(zoo, finals, strict=True):
        epoch = EARLY_RULE.select(run_info.path)
        early_name = final.name if epoch == epochs else f"{final.name}@e{epoch}"
        rows.append(EarlyVsFinal(run=final.name, group=final.group, epoch=epoch, final_epoch=epochs,
                                 early=per[early_name], final=per[final.name]))
    return rows


def _matrix_markdown(result: TransferResult) -> str:
    clean: dict[str, list[tuple[float, float]]] = {}
    for s in result.sources:
        clean.setdefault(s.group, []).append((s.clean_accuracy, s.whitebox_success))
    table = markdown_table(
        ["source group", "seeds", "clean acc %", "white-box success %", "transfer success % (mean over targets)",
         "95 % CI over seeds", "target acc % on its examples"],
        [[g.group, g.sources, f"{100 * sum(c[0] for c in clean[g.group]) / len(clean[g.group]):.1f}",
          f"{100 * sum(c[1] for c in clean[g.group]) / len(clean[g.group]):.1f}", fmt_pct(g.mean_success),
          fmt_ci(g.ci), fmt_pct(g.mean_target_accuracy)] for g in result.per_source_group()])
    gm = result.group_matrix()
    cells = markdown_table(["source \\ target", *gm.columns],
                           [[a, *[f"{fmt_pct(c.mean)} {fmt_ci(c.ci)}" for c in row]] for a, row in zip(gm.rows, gm.cells, strict=True)])
    d = result.definitions
    settings = result.settings
    return (f"Attack `{settings.attack}`, untargeted, {settings.num_samples} mnist5k test images; every final model attacks every "
            f"other (a model is never its own target).\n\n*Transfer success*: {d['transfer_success']}; *eligible*: "
            f"{d['eligible']}. *Target accuracy*: {d['target_accuracy']}.\n\n{table}\n\n"
            f"Transfer success % by source group (rows) and target group (columns), mean over model pairs "
            f"with a 95 % t-interval:\n\n{cells}\n")


def _early_markdown(curve: list[tuple[str, list[CurvePoint]]], early: list[EarlyVsFinal]) -> str:
    rows = [[group, p.epoch, f"{100 * p.clean_accuracy:.1f}", fmt_pct(p.mean_success), fmt_ci(p.ci)]
            for group, points in curve for p in points]
    t1 = markdown_table(["source group", "source epoch", "source clean acc %", "transfer success %",
                         "95 % CI over seeds"], rows)
    t2 = markdown_table(["source run", "early epoch", "success % (early)", "success % (final)", "gain (points)"],
                        [[r.run, r.epoch, fmt_pct(r.early), fmt_pct(r.final), fmt_points(r.gain)] for r in early])
    return (f"Checkpoints of every epoch attack the final models of the other runs. Early stopping rule "
            f"`{EARLY_RULE}`: the earliest kept epoch whose clean accuracy reaches 90 % of the final.\n\n{t1}\n\n{t2}\n")


def _pct_ci(stats: tuple[float, float, float]) -> str:
    """``mean [lo, hi]`` in percent (the interval left out when undefined)."""
    ci = fmt_ci((stats[1], stats[2]))
    return f"{fmt_pct(stats[0])} {ci}" if ci else fmt_pct(stats[0])


def no_bn_claim(result: TransferResult, twins: Sequence[tuple[str, str]], *, protocol: str = "") -> Verdict:
    """Claim: sources without BN transfer better. ``twins`` pairs each BN source with the no-BN source of the
    same arch and seed; the difference (no-BN minus BN mean transfer success over targets) is paired by
    twin, and the verdict follows the interval of its mean."""
    per = {r.source: r for r in result.per_source()}
    bn = [per[a].mean_success for a, _ in twins]
    nobn = [per[b].mean_success for _, b in twins]
    diff, lo, hi = paired_ci(nobn, bn)
    parts = []
    for arch in sorted({result.source(a).group.split("/")[0] for a, _ in twins}):
        mine = [(a, b) for a, b in twins if result.source(a).group.split("/")[0] == arch]
        m_bn = mean_ci([per[a].mean_success for a, _ in mine])
        m_nobn = mean_ci([per[b].mean_success for _, b in mine])
        by_target = []
        for tnorm in ("bn", "none"):
            vals = {}
            for snorm in ("bn", "none"):
                ps = [p.transfer_success for p in result.pairs.values() if result.counted(p)
                      and p.source_group == f"{arch}/{snorm}" and p.target_group.endswith(f"/{tnorm}")]
                vals[snorm] = mean_ci(ps)[0]
            by_target.append(f"on {tnorm} targets: no-BN {fmt_pct(vals['none'])} vs BN {fmt_pct(vals['bn'])}")
        parts.append(f"{arch}: no-BN sources {_pct_ci(m_nobn)} vs BN sources {_pct_ci(m_bn)} "
                     f"({'; '.join(by_target)})")
    evidence = (f"Mean transfer success over targets (95 % CI over seeds): {'; '.join(parts)}. No-BN minus BN, "
                f"paired by arch and seed: {fmt_points(diff)} points{ci_phrase((lo, hi))} over {len(twins)} twin pairs.")
    return judge(NO_BN_CLAIM, diff, lo, hi, evidence,
                 protocol=f"{protocol}; difference paired by twin (same arch and seed), t-interval across pairs"
                 if protocol else "difference paired by twin (same arch and seed), t-interval across pairs")


def early_stop_claim(rows: Sequence[EarlyVsFinal], *, protocol: str = "") -> Verdict:
    """Claim: early-stopped sources transfer better than the final model. The gain (early minus final mean
    transfer success) per run where the rule chose an earlier epoch; the verdict follows its interval."""
    gains = [r.gain for r in rows if r.epoch < r.final_epoch and math.isfinite(r.gain)]
    g, lo, hi = mean_ci(gains, proportion=False)
    helped = sum(x > 0 for x in gains)
    evidence = (f"Early checkpoint (rule {EARLY_RULE}) minus final model: mean {fmt_points(g)} points"
                f"{ci_phrase((lo, hi))} over the {len(gains)} runs where the rule chose an earlier epoch; "
                f"higher for {helped}/{len(gains)}.")
    base = "t-interval across runs"
    return judge(EARLY_CLAIM, g, lo, hi, evidence, protocol=f"{protocol}; {base}" if protocol else base)
