"""Adversarial training with and without BN (Figure 3's adversarial curves), the normalization family
(claim 7: GN, LN and IN also raise vulnerability) and corruption robustness (BN lowers it), on mnist5k.

Every model is a smallcnn trained with the dataset preset's recipe and the same seed(s); the framework
numbers (clean accuracy, robust accuracy per attack, LIGS) come from one fixed, seeded set of test images.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..attacks import parse_attack
from ..checkpoint import load_model
from ..io import atomic_write_json
from ..corruptions import SEVERITIES, benchmark_corruptions, corruption_accuracy, summarize_corruption_accuracy
from ..data import DatasetBundle, ImageTensorDataset, load_dataset
from ..metrics import evaluate_model
from ..plots import new_figure, plot_runs, save_figure
from ..presets import PRESETS
from ..report import Section, claim_line, markdown_table, num, pct
from ..training import TrainConfig, make_config, train_or_reuse

Log = Callable[[str], None]

#: A model whose clean accuracy is this far below its no-normalization twin's did not learn the task:
#: its robustness says nothing about the normalization.
USEFULNESS_GAP = 0.10
#: "Near 1" for LIGS: the paper's adversarially trained models sit at about 0.98.
LIGS_NEAR_ONE = 0.9
#: Below this clean accuracy a model has not learned the task and its robustness is not compared.
MIN_CLEAN = 0.5
#: How much robust accuracy BN may cost an adversarially trained model and still count as "little".
LITTLE = 0.05


@dataclass(frozen=True)
class Settings:
    """What the experiment trains and measures; the defaults are the CPU-scale reproduction."""

    dataset: str = "mnist5k"
    arch: str = "smallcnn"
    width: float = 0.5
    epochs: int = 8  # as the demo; GN, LN and IN lag far behind after 4
    train_size: int | None = None  # None: the whole training set
    eval_size: int = 200  # per-epoch curves
    test_size: int = 500  # final table and corruptions, the same images for every model
    norms: tuple[str, ...] = ("bn", "gn", "ln", "in", "bn-eval", "none")
    at_norms: tuple[str, ...] = ("bn", "none")
    at_epochs: int = 4
    at_eps: float = 2.0  # targeted PGD-L2 toward random classes (the paper's variant)
    at_steps: int = 4
    at_mode: str = "train"  # the official code crafts training attacks with BN in train mode
    corruptions: tuple[str, ...] = tuple(benchmark_corruptions())
    severities: tuple[int, ...] = SEVERITIES
    device: str = "auto"


QUICK = Settings(epochs=2, train_size=1000, eval_size=32, test_size=100, norms=("bn", "none"), at_epochs=1,
                 at_steps=2, corruptions=("gaussian_noise", "contrast", "defocus_blur"), severities=(1, 3, 5))


def _curve_attack(bundle: DatasetBundle) -> list[str]:
    """The per-epoch attack: the preset's first (L2) attack, with 5 steps to keep curves cheap."""
    spec = parse_attack(PRESETS[make_config(dataset=bundle.name).preset]["eval_attacks"][0])
    return [dataclasses.replace(spec, steps=5, step_size=2 * spec.eps / 5).to_string()]


def _config(s: Settings, bundle: DatasetBundle, norm: str, seed: int, adversarial: bool) -> TrainConfig:
    fields = dict(dataset=s.dataset, arch=s.arch, norm=norm, width=s.width, epochs=s.epochs, seed=seed,
                  eval_size=s.eval_size, eval_attacks=_curve_attack(bundle), device=s.device)
    if adversarial:
        fields.update(epochs=s.at_epochs, adv_train="targeted-l2", adv_eps=s.at_eps, adv_steps=s.at_steps,
                      attack_mode=s.at_mode)
    return make_config(**fields)


def _subset(data: ImageTensorDataset, n: int | None, seed: int) -> ImageTensorDataset:
    """A seeded random subset (the embedded sets are sorted by class, so a prefix would not do)."""
    if n is None or n >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values)


def _cached(path: Path, key: dict, compute: Callable[[], object]) -> object:
    """A JSON result stored next to a run, recomputed when the settings it was made with differ."""
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return stored["value"]
    value = compute()
    atomic_write_json(path, {"key": key, "value": value})
    return value


def _measure(run_dir: Path, test: ImageTensorDataset, s: Settings, bundle: DatasetBundle, seed: int,
             progress: bool) -> dict:
    """Framework numbers (preset attacks, LIGS) and corruption accuracy of a run's final model."""
    attacks = PRESETS[make_config(dataset=bundle.name).preset]["eval_attacks"]
    x, y = test.tensors()

    def framework() -> dict:
        model = load_model(run_dir)
        built = [(parse_attack(a).label, parse_attack(a).build(model, seed=seed)) for a in attacks]
        return evaluate_model(model, x, y, built, 0.01, seed).row()

    def corrupted() -> list[dict]:
        return corruption_accuracy(load_model(run_dir), test, s.corruptions, s.severities, seed=0, progress=progress)

    key = {"attacks": attacks, "test_size": len(test), "seed": seed}
    ckey = {"corruptions": list(s.corruptions), "severities": list(s.severities), "test_size": len(test)}
    return {"framework": _cached(run_dir / "norms_eval.json", key, framework),
            "corruptions": _cached(run_dir / "norms_corruptions.json", ckey, corrupted)}


def run(out_dir: Path, *, quick: bool = False, seeds: Sequence[int] = (0, 1), progress: bool = True,
) -> list[Section]:
    """Train the adversarial, normalization-family and corruption models under ``out_dir``; three sections."""
    s = QUICK if quick else Settings()
    out = Path(out_dir)
    full = load_dataset(s.dataset)
    bundle = dataclasses.replace(full, train=_subset(full.train, s.train_size, 0))
    test = _subset(full.test, s.test_size, 0)
    std: dict[str, list[Path]] = {n: [] for n in s.norms}
    adv: dict[str, list[Path]] = {n: [] for n in s.at_norms}
    for seed in seeds:
        for norm in s.norms:
            cfg = _config(s, bundle, norm, seed, adversarial=False)
            std[norm].append(train_or_reuse(cfg, out / "runs" / f"std-{norm}-s{seed}", progress=progress, bundle=bundle))
        for norm in s.at_norms:
            cfg = _config(s, bundle, norm, seed, adversarial=True)
            adv[norm].append(train_or_reuse(cfg, out / "runs" / f"at-{norm}-s{seed}", progress=progress, bundle=bundle))
    measured = {p: _measure(p, test, s, bundle, seed, progress) for group in (std, adv) for runs in group.values()
                for seed, p in zip(seeds, runs)}
    std_rows = {n: [measured[p]["framework"] for p in runs] for n, runs in std.items()}
    adv_rows = {n: [measured[p]["framework"] for p in runs] for n, runs in adv.items()}
    return [
        _adversarial_section(out, s, std, adv, std_rows, adv_rows, len(test)),
        _family_section(out, s, std, std_rows, len(test)),
        _corruption_section(out, s, std, adv, measured, std_rows, adv_rows, len(test)),
    ]


# ---------------------------------------------------------------------------------------------
# Numbers over seeds


def _mean(rows: Sequence[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r and r[key] is not None and not math.isnan(r[key])]
    return statistics.fmean(vals) if vals else math.nan


def _cell(rows: Sequence[dict], key: str, fmt: Callable[[float], str]) -> str:
    vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    if len(vals) <= 1:
        return fmt(vals[0]) if vals else "n/a"
    return f"{fmt(statistics.fmean(vals))} ({fmt(min(vals))} to {fmt(max(vals))})"


def _learned(*groups: Sequence[dict]) -> bool:
    """Whether every compared model reached MIN_CLEAN clean accuracy (else a verdict proves nothing)."""
    return all(_mean(rows, "clean_acc") >= MIN_CLEAN for rows in groups)


def _verdict(agrees: bool, *groups: Sequence[dict]) -> bool | None:
    return agrees if _learned(*groups) else None


def _robust_keys(rows: Sequence[dict]) -> list[str]:
    return [k for k in rows[0] if k.startswith("robust_acc[")]


def _table(groups: dict[str, list[dict]]) -> str:
    first = next(iter(groups.values()))
    keys = _robust_keys(first)
    header = ["model", "clean acc"] + [f"robust acc {k[11:-1]}" for k in keys] + ["LIGS"]
    body = [[name, _cell(rows, "clean_acc", pct)] + [_cell(rows, k, pct) for k in keys] + [_cell(rows, "ligs", num)]
            for name, rows in groups.items()]
    return markdown_table(header, body)


def _settings_line(s: Settings, n_test: int, seeds: int) -> str:
    train = "all" if s.train_size is None else str(s.train_size)
    return (f"Settings: {s.dataset} ({train} training images), {s.arch} width {s.width}, the dataset preset's "
            f"recipe, {s.epochs} epochs, {seeds} seed(s). Numbers on {n_test} fixed test images; curves on "
            f"{s.eval_size} images with a 5-step PGD-L2.")


# ---------------------------------------------------------------------------------------------
# Sections


def _adversarial_section(out: Path, s: Settings, std, adv, std_rows, adv_rows, n_test: int) -> Section:
    groups = {}
    for n in s.at_norms:
        groups[f"AT {n}"] = adv_rows[n]
        if n in std_rows:
            groups[f"standard {n}"] = std_rows[n]
    key = _robust_keys(next(iter(adv_rows.values())))[0]
    claims = []
    if "bn" in adv_rows and "none" in adv_rows:
        ligs_at = {n: _mean(adv_rows[n], "ligs") for n in ("bn", "none")}
        ligs_std = {n: _mean(std_rows[n], "ligs") for n in ("bn", "none") if n in std_rows}
        near = all(v >= LIGS_NEAR_ONE for v in ligs_at.values())
        claims.append(claim_line(
            "Adversarially trained models keep LIGS near 1, with or without BN",
            _verdict(near, *adv_rows.values()),
            f"LIGS: AT bn {num(ligs_at['bn'])}, AT none {num(ligs_at['none'])} (threshold {LIGS_NEAR_ONE}); "
            + "for reference " + ", ".join(f"standard {n} {num(v)}" for n, v in ligs_std.items()) + "."))
        rob = {n: _mean(adv_rows[n], key) for n in ("bn", "none")}
        cost_at = rob["none"] - rob["bn"]
        evidence = f"{key[11:-1]}: AT bn {pct(rob['bn'])}, AT none {pct(rob['none'])} (BN costs {100 * cost_at:.1f} points"
        if "bn" in std_rows and "none" in std_rows:
            cost_std = _mean(std_rows["none"], key) - _mean(std_rows["bn"], key)
            evidence += f"; between the standard twins {100 * cost_std:.1f} points"
        claims.append(claim_line(f"BN costs adversarially trained models little robustness (<= {100 * LITTLE:.0f} "
                                 "points)", _verdict(cost_at <= LITTLE, *adv_rows.values()), evidence + ")."))
    runs = [p for n in s.at_norms for p in adv[n][:1]] + [p for n in s.at_norms if n in std for p in std[n][:1]]
    images = plot_runs(runs, out / "adversarial_curves", title="adversarial vs standard training (first seed)")
    if not _learned(*adv_rows.values()):
        claims.append(f"- An adversarially trained model stayed below {pct(MIN_CLEAN, 0)} clean accuracy: too "
                      "short a run to judge.")
    md = "\n\n".join([
        f"Adversarial training as in the paper's code: targeted PGD-L2 toward a uniformly random class, eps "
        f"{s.at_eps:g}, {s.at_steps} steps (step {2.5 * s.at_eps / s.at_steps:g}), no random start, crafted with "
        f"the model in {s.at_mode} mode; {s.at_epochs} epochs. " + _settings_line(s, n_test, len(adv[s.at_norms[0]])),
        _table(groups), "\n".join(claims)])
    return Section("Adversarial training with and without BN", md, [p for p in images if p.suffix == ".png"])


def _family_section(out: Path, s: Settings, std, std_rows, n_test: int) -> Section:
    key = _robust_keys(next(iter(std_rows.values())))[0]
    flagged, claims = [], []
    if "none" in std_rows:
        base_clean, base_rob = _mean(std_rows["none"], "clean_acc"), _mean(std_rows["none"], key)
        base_ligs = _mean(std_rows["none"], "ligs")
        for n in s.norms:
            if n != "none" and _mean(std_rows[n], "clean_acc") < base_clean - USEFULNESS_GAP:
                flagged.append(n)
        others = [n for n in ("gn", "ln", "in") if n in std_rows and n not in flagged]
        if others:
            lower = [n for n in others if _mean(std_rows[n], key) < base_rob]
            evidence = ", ".join(f"{n} {pct(_mean(std_rows[n], key))} (LIGS {num(_mean(std_rows[n], 'ligs'))})"
                                 for n in others)
            claims.append(claim_line(
                "Other normalizations (GN, LN, IN) also raise adversarial vulnerability relative to none",
                _verdict(len(lower) == len(others), std_rows["none"], *(std_rows[n] for n in others)),
                f"{key[11:-1]}: none {pct(base_rob)} (LIGS {num(base_ligs)}); {evidence}; lower than none: "
                f"{', '.join(lower) or 'none of them'}."))
        elif any(n in std_rows for n in ("gn", "ln", "in")):
            claims.append(claim_line("Other normalizations also raise adversarial vulnerability", None,
                                     "every GN/LN/IN model is flagged as not having learned the task."))
        if "bn" in std_rows and "bn" not in flagged:
            bn_rob = _mean(std_rows["bn"], key)
            claims.append(claim_line("BN raises adversarial vulnerability relative to none",
                                     _verdict(bn_rob < base_rob, std_rows["bn"], std_rows["none"]),
                                     f"{key[11:-1]}: bn {pct(bn_rob)}, none {pct(base_rob)}."))
    notes = [f"- **flagged**: {n} reaches {pct(_mean(std_rows[n], 'clean_acc'))} clean accuracy, more than "
             f"{100 * USEFULNESS_GAP:.0f} points below none's {pct(_mean(std_rows['none'], 'clean_acc'))}; its "
             "robustness is not compared." for n in flagged]
    images = plot_runs([std[n][0] for n in s.norms], out / "normalization_family",
                       title="normalization family, standard training (first seed)")
    md = "\n\n".join(filter(None, [
        "The same smallcnn and recipe with each normalization (bn-eval: BN's affine only, never batch statistics). "
        + _settings_line(s, n_test, len(std[s.norms[0]])),
        _table({n: std_rows[n] for n in s.norms}), "\n".join(notes), "\n".join(claims)]))
    return Section("The normalization family", md, [p for p in images if p.suffix == ".png"])


def _corruption_section(out: Path, s: Settings, std, adv, measured, std_rows, adv_rows, n_test: int) -> Section:
    models = {f"standard {n}": std[n] for n in s.norms} | {f"AT {n}": adv[n] for n in s.at_norms}
    clean = {f"standard {n}": std_rows[n] for n in s.norms} | {f"AT {n}": adv_rows[n] for n in s.at_norms}
    summary = {name: [summarize_corruption_accuracy(measured[p]["corruptions"]) for p in runs]
               for name, runs in models.items()}
    stats: dict[str, dict[str, float]] = {}
    for name in models:
        c = statistics.fmean(r["clean_acc"] for r in clean[name])
        m = statistics.fmean(x["mean"] for x in summary[name])
        stats[name] = {"clean": c, "mean": m, "relative": m / c if c > 0 else math.nan}
    header = ["model", "clean acc", "mean corruption acc", "relative (mean / clean)", "drop (points)"] + list(
        s.corruptions)
    body = [[name, pct(v["clean"]), pct(v["mean"]), num(v["relative"]), f"{100 * (v['clean'] - v['mean']):.1f}"]
            + [pct(statistics.fmean(x["per_corruption"][c] for x in summary[name])) for c in s.corruptions]
            for name, v in stats.items()]
    claims = []
    if "standard bn" in stats and "standard none" in stats:
        bn, none = stats["standard bn"], stats["standard none"]
        claims.append(claim_line(
            "BN lowers corruption robustness (relative corruption accuracy)",
            bn["relative"] < none["relative"] if min(bn["clean"], none["clean"]) >= MIN_CLEAN else None,
            f"mean corruption accuracy / clean accuracy: bn {num(bn['relative'])} ({pct(bn['mean'])} of "
            f"{pct(bn['clean'])}), none {num(none['relative'])} ({pct(none['mean'])} of {pct(none['clean'])})."))
    images = _plot_severity(out / "corruption_severity", models, measured, s)
    md = "\n\n".join([
        f"Accuracy on the same {n_test} test images under {len(s.corruptions)} CIFAR-10-C corruptions at "
        f"severities {', '.join(map(str, s.severities))} (nrflab.corruptions, CIFAR parameters applied to 28x28 "
        "images). The relative accuracy divides by each model's own clean accuracy, since clean accuracies differ.",
        markdown_table(header, body), "\n".join(claims)])
    return Section("Corruption robustness", md, [p for p in images if p.suffix == ".png"])


def _plot_severity(stem: Path, models: dict[str, list[Path]], measured: dict, s: Settings) -> list[Path]:
    """Mean corruption accuracy against severity, one line per model (first seed)."""
    fig, axes = new_figure(figsize=(5.5, 3.6))
    ax = axes[0][0]
    for name, runs in models.items():
        per = summarize_corruption_accuracy(measured[runs[0]]["corruptions"])["per_severity"]
        ax.plot(list(s.severities), [100 * per[sev] for sev in s.severities], marker="o",
                linestyle="--" if "none" in name else "-", label=name)
    ax.set_xlabel("severity")
    ax.set_ylabel("mean corruption accuracy (%)")
    ax.set_xticks(list(s.severities))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)


__all__ = ["QUICK", "Settings", "run"]
