"""Paper claim 6 at CPU scale: robust features transfer better, so adversarial examples from sources
without BN, and from early-stopped sources, fool other models more often.

A zoo on mnist5k -- BN and no-BN models of two archs, several seeds, checkpoints kept every epoch --
gives a full transfer matrix (PGD-Linf eps 0.1): every final model attacks every other one, and the
kept checkpoints of every epoch attack the final models, for the success-vs-source-epoch curve.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..data import load_dataset
from ..report import Section, claim_line, markdown_table
from ..training import make_config, train_or_reuse
from ..transfer import (EarlyStop, ModelRef, TransferResult, fmt_ci, fmt_pct, mean_ci, resolve_model,
                        transfer_matrix, write_outputs)

FULL = {"archs": (("smallcnn", 0.5), ("vgg11", 0.25)), "epochs": 6, "train_size": None, "limit": 500,
        "attack": "pgd-linf:eps=0.1,step=0.025,steps=10"}
QUICK = {"archs": (("smallcnn", 0.5),), "epochs": 2, "train_size": 1000, "limit": 100,
         "attack": "pgd-linf:eps=0.1,step=0.04,steps=5"}
EARLY_RULE = EarlyStop("frac", 0.9)


def run(out_dir: Path, *, quick: bool = False, seeds: Sequence[int] = (0, 1), progress: bool = True) -> list[Section]:
    """Train the zoo (reusing finished runs), compute the matrix and the early-stop curve, and report."""
    out_dir = Path(out_dir)
    setup = QUICK if quick else FULL
    bundle = load_dataset("mnist5k")
    if setup["train_size"]:
        bundle = replace(bundle, train=bundle.train.subset(range(setup["train_size"])))
    runs = []
    for arch, width in setup["archs"]:
        for norm in ("bn", "none"):
            for seed in seeds:
                run_dir = out_dir / "runs" / f"{arch}_{norm}_s{seed}"
                cfg = make_config(dataset="mnist5k", arch=arch, norm=norm, width=width, epochs=setup["epochs"],
                                  seed=seed, eval_attacks=[], ligs=False, keep_checkpoints=1, device="cpu")
                runs.append(train_or_reuse(cfg, run_dir, progress=progress, bundle=bundle))
    finals = [resolve_model(r) for r in runs]
    earlier = [resolve_model(r, e) for r in runs for e in range(1, setup["epochs"])]
    result = transfer_matrix([*finals, *earlier], finals, bundle, setup["attack"], out_dir / "transfer",
                             limit=setup["limit"], progress=progress)
    matrix_only = TransferResult(result.settings, result.sources[: len(finals)], result.targets,
                                 [p for p in result.pairs if p["source"] in {f.name for f in finals}])
    paths = write_outputs(matrix_only, out_dir / "transfer")
    curve = _epoch_curve(result, finals, earlier, setup["epochs"])
    curve_img = _plot_curve(curve, out_dir / "transfer_vs_source_epoch")
    early = _early_vs_final(result, runs, finals, setup["epochs"])
    return [
        Section("Transfer matrix (BN vs no-BN sources)", _matrix_markdown(matrix_only),
                [paths["transfer_success_png"], paths["target_accuracy_png"]]),
        Section("Early-stopped sources", _early_markdown(curve, early), [curve_img]),
        Section("Claims: transferability", "\n".join(_claims(matrix_only, early))),
    ]


def _per_source(result: TransferResult) -> dict[str, dict]:
    return {r["source"]: r for r in result.per_source()}


def _base_group(group: str) -> str:
    return group.split("@", 1)[0]


def _epoch_curve(result: TransferResult, finals: list[ModelRef], earlier: list[ModelRef], epochs: int) -> dict[str, list]:
    """Per group: (epoch, mean success over seeds, CI low, CI high, mean source clean acc) for epochs 1..E."""
    per = _per_source(result)
    clean = {s["name"]: s["clean_accuracy"] for s in result.sources}
    curve: dict[str, list] = {}
    for ref in [*earlier, *finals]:
        epoch = ref.epoch if ref.epoch is not None else epochs
        curve.setdefault(_base_group(ref.group), []).append((epoch, per[ref.name]["mean_success"], clean[ref.name]))
    out = {}
    for group, pts in curve.items():
        rows = []
        for e in sorted({p[0] for p in pts}):
            m, lo, hi = mean_ci([p[1] for p in pts if p[0] == e])
            rows.append((e, m, lo, hi, sum(p[2] for p in pts if p[0] == e) / sum(1 for p in pts if p[0] == e)))
        out[group] = rows
    return out


def _plot_curve(curve: dict[str, list], stem: Path) -> Path:
    from ..plots import NORM_STYLE, new_figure, save_figure

    fig, axes = new_figure(figsize=(5.6, 3.6))
    ax = axes[0][0]
    for group, rows in curve.items():
        e = [r[0] for r in rows]
        line, = ax.plot(e, [100 * r[1] for r in rows], marker="o", linestyle=NORM_STYLE.get(group.split("/")[-1], "-"),
                        label=group)
        lo = [100 * r[2] if math.isfinite(r[2]) else 100 * r[1] for r in rows]
        hi = [100 * r[3] if math.isfinite(r[3]) else 100 * r[1] for r in rows]
        ax.fill_between(e, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("source epoch (checkpoint)")
    ax.set_ylabel("transfer success % (mean over targets)")
    ax.set_title("transfer success vs source epoch (mean over seeds, 95 % CI)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)[0]


def _early_vs_final(result: TransferResult, runs: list[Path], finals: list[ModelRef], epochs: int) -> list[dict]:
    """Per run: the early-stopped checkpoint (rule EARLY_RULE) vs the final model, same targets."""
    per = _per_source(result)
    rows = []
    for run_dir, final in zip(runs, finals):
        epoch = EARLY_RULE.select(run_dir)
        early_name = final.name if epoch == epochs else f"{final.name}@e{epoch}"
        rows.append({"run": final.name, "group": final.group, "epoch": epoch, "final_epoch": epochs,
                     "final": per[final.name]["mean_success"], "early": per[early_name]["mean_success"]})
    return rows


def _matrix_markdown(result: TransferResult) -> str:
    groups = result.per_source_group()
    sg, tg, cells = result.group_matrix()
    clean = {}
    for s in result.sources:
        clean.setdefault(s["group"], []).append((s["clean_accuracy"], s["whitebox_success"]))
    table = markdown_table(
        ["source group", "seeds", "clean acc %", "white-box success %", "transfer success % (mean over targets)",
         "95 % CI over seeds", "target acc % on its examples"],
        [[g["group"], g["sources"], f"{100 * sum(c[0] for c in clean[g['group']]) / len(clean[g['group']]):.1f}",
          f"{100 * sum(c[1] for c in clean[g['group']]) / len(clean[g['group']]):.1f}", fmt_pct(g["mean_success"]),
          fmt_ci(g["ci"]), fmt_pct(g["mean_target_accuracy"])] for g in groups])
    gm = markdown_table(["source \\ target", *tg],
                        [[a, *[f"{fmt_pct(c['mean'])} {fmt_ci(c['ci'])}" for c in row]] for a, row in zip(sg, cells)])
    d = result.definitions
    s = result.settings
    return (f"Attack `{s.attack}`, untargeted, {s.num_samples} mnist5k test images; every final model attacks every "
            f"other (a model is never its own target).\n\n*Transfer success*: {d['transfer_success']}; *eligible*: "
            f"{d['eligible']}. *Target accuracy*: {d['target_accuracy']}.\n\n{table}\n\n"
            f"Transfer success % by source group (rows) and target group (columns), mean over model pairs "
            f"with a 95 % t-interval:\n\n{gm}\n")


def _early_markdown(curve: dict[str, list], early: list[dict]) -> str:
    rows = []
    for group, pts in curve.items():
        for e, m, lo, hi, acc in pts:
            rows.append([group, e, f"{100 * acc:.1f}", fmt_pct(m), fmt_ci((lo, hi))])
    t1 = markdown_table(["source group", "source epoch", "source clean acc %", "transfer success %", "95 % CI over seeds"], rows)
    t2 = markdown_table(["source run", "early epoch", "success % (early)", "success % (final)", "gain (points)"],
                        [[r["run"], r["epoch"], fmt_pct(r["early"]), fmt_pct(r["final"]), f"{100 * (r['early'] - r['final']):+.1f}"]
                         for r in early])
    return (f"Checkpoints of every epoch attack the final models of the other runs. Early stopping rule "
            f"`{EARLY_RULE}`: the earliest kept epoch whose clean accuracy reaches 90 % of the final.\n\n{t1}\n\n{t2}\n")


def _claims(result: TransferResult, early: list[dict]) -> list[str]:
    per = result.per_source()
    archs = sorted({r["group"].split("/")[0] for r in per})
    parts, wins, losses, total = [], 0, 0, 0
    for arch in archs:
        bn = mean_ci([r["mean_success"] for r in per if r["group"] == f"{arch}/bn"])
        nobn = mean_ci([r["mean_success"] for r in per if r["group"] == f"{arch}/none"])
        by_target = []
        for tnorm in ("bn", "none"):
            vals = {}
            for snorm in ("bn", "none"):
                ps = [p["transfer_success"] for p in result.pairs if not p["self"] and p["source_group"] == f"{arch}/{snorm}"
                      and p["target_group"].endswith(f"/{tnorm}")]
                vals[snorm] = mean_ci(ps)[0]
            by_target.append(f"on {tnorm} targets: no-BN {fmt_pct(vals['none'])} vs BN {fmt_pct(vals['bn'])}")
        total += 1
        overlap = not (nobn[1] > bn[2] or bn[1] > nobn[2]) if math.isfinite(nobn[1]) and math.isfinite(bn[1]) else True
        wins += not overlap and nobn[0] > bn[0]  # only a gap beyond seed noise counts either way
        losses += not overlap and nobn[0] < bn[0]
        parts.append(f"{arch}{' (CIs overlap: within seed noise)' if overlap else ''}: no-BN sources {fmt_pct(nobn[0])} {fmt_ci(nobn[1:])} vs BN sources {fmt_pct(bn[0])} {fmt_ci(bn[1:])} "
                     f"({'; '.join(by_target)})")
    agree1 = True if wins == total else (False if losses == total else None)
    gains = [r["early"] - r["final"] for r in early
             if r["epoch"] < r["final_epoch"] and math.isfinite(r["early"]) and math.isfinite(r["final"])]
    g, lo, hi = mean_ci(gains, proportion=False)
    helped = sum(x > 0 for x in gains)
    agree2 = None
    if gains and g > 0 and helped > len(gains) / 2:
        agree2 = True
    elif gains and g <= 0 and helped < len(gains) / 2:
        agree2 = False
    return [
        claim_line("RFs transfer better: adversarial examples from sources without BN transfer better", agree1,
                   "Mean transfer success over targets (95 % CI over seeds): " + "; ".join(parts) + "."),
        claim_line("Early-stopped sources (mostly RFs) transfer better than the final model", agree2,
                   f"Early checkpoint (rule {EARLY_RULE}) minus final model: mean {100 * g:+.1f} points "
                   f"{fmt_ci((lo, hi))} over the {len(gains)} runs where the rule chose an earlier epoch; "
                   f"higher for {helped}/{len(gains)}."),
    ]
