"""``nrflab transfer``: a transfer matrix between models, with the paper's boosts (no-BN twin, early stop)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..data import load_dataset
from ..io import read_yaml_mapping
from ..errors import NrflabError
from ..training import read_run_config
from ..validation import resolve_device
from .app import app
from .options import attack_specs_from_flags

RECIPE_KEYS = {"sources", "targets", "dataset", "data_root", "attack", "eps", "steps", "step_size", "targeted",
               "target_policy", "source_epoch", "boost", "early_stop", "twin_candidates", "limit", "seed", "device",
               "batch_size", "include_self", "out"}


def _split(values: Optional[list[str]]) -> list[str]:
    """Repeated options, each possibly a comma- or space-separated list."""
    out: list[str] = []
    for v in values or []:
        out.extend(p for p in v.replace(",", " ").split() if p)
    return out


def _read_recipe(path: Path) -> dict[str, Any]:
    data = {str(k).replace("-", "_"): v for k, v in read_yaml_mapping(path, "recipe").items()}
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise NrflabError(f"recipe {path} has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(RECIPE_KEYS))}")
    for key in ("sources", "targets", "twin_candidates"):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    return data


@app.command()
def transfer(
    sources: Optional[list[str]] = typer.Option(None, "--sources", "-s", help="Source models: run dirs, RUN_DIR@epoch=K, or model .safetensors files. Repeat the option or give a comma/space-separated list."),
    targets: Optional[list[str]] = typer.Option(None, "--targets", "-t", help="Target models (same forms as --sources)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (cached adversarial examples, pair results, matrix CSV/JSON, heat maps, summary.md)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="A YAML file with the same keys (sources, targets, dataset, attack, eps, ...); flags override it."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset whose test set is attacked (default: the first source run's dataset)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the dataset's files are."),
    attack: Optional[str] = typer.Option(None, "--attack", "-a", help="pgd-linf, pgd-l2, fgsm, fgm-l2, or a full spec like 'pgd-linf:eps=0.1,steps=10' (default pgd-linf)."),
    eps: Optional[float] = typer.Option(None, "--eps", help="Attack radius (pixel scale)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Attack iterations (default 10)."),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="Attack step (default 2.5 * eps / steps)."),
    targeted: Optional[bool] = typer.Option(None, "--targeted/--untargeted", help="Targeted attack; success = the target predicts the target class."),
    target_policy: Optional[str] = typer.Option(None, "--target-policy", help="Target classes: next = (y+1) mod C, random = a seeded uniform wrong class."),
    source_epoch: Optional[int] = typer.Option(None, "--source-epoch", help="Use epoch K's kept checkpoint of every source run (train with --keep-checkpoints)."),
    boost: Optional[str] = typer.Option(None, "--boost", help="none; no-bn-twin (the source's twin run with norm none); early-stop (an earlier checkpoint chosen by --early-stop); both (all combinations). Boosted variants are compared with the sources as given."),
    early_stop: Optional[str] = typer.Option(None, "--early-stop", help="Early-stop rule: epoch=K, frac=X (earliest kept epoch with clean acc >= X * final; default frac=0.9), or ligs=F (highest-LIGS kept epoch with clean acc >= F)."),
    twin_candidates: Optional[list[str]] = typer.Option(None, "--twin-candidates", help="Run dirs, or folders of run dirs, to search for no-BN twins (default: the sources' parent folders)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Attack a seeded random subset of N test images."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for random starts and random target classes."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    include_self: Optional[bool] = typer.Option(None, "--include-self/--exclude-self", help="Count a model as its own target in averages (default: excluded)."),
    resume: bool = typer.Option(False, "--resume", help="Reuse the results already in --out (same settings); only missing work is done."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute everything even if --out holds results."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Transfer matrix: craft adversarial examples on each source once, evaluate every target on them.

    Reports per pair the target's accuracy on the transferred examples and the transfer success on
    eligible examples (source correct when clean and fooled; target correct when clean), with 95 %
    Wilson intervals, per-source averages over targets, and the effect of the chosen boost.
    """
    from ..transfer import EarlyStop, run_transfer

    given = dict(sources=_split(sources) or None, targets=_split(targets) or None, dataset=dataset,
                 data_root=data_root, attack=attack, eps=eps, steps=steps, step_size=step_size, targeted=targeted,
                 target_policy=target_policy, source_epoch=source_epoch, boost=boost, early_stop=early_stop,
                 twin_candidates=_split(twin_candidates) or None, limit=limit, seed=seed, device=device,
                 batch_size=batch_size, include_self=include_self, out=str(out) if out else None)
    cfg = _read_recipe(recipe) if recipe else {}
    cfg.update({k: v for k, v in given.items() if v is not None})
    if not cfg.get("sources"):
        raise NrflabError("no sources given (--sources RUN_DIR ...)")
    if not cfg.get("targets"):
        raise NrflabError("no targets given (--targets RUN_DIR ...)")
    if not cfg.get("out"):
        raise NrflabError("no output directory given (--out DIR)")
    boost_name = cfg.get("boost", "none")
    if cfg.get("source_epoch") is not None and boost_name in ("early-stop", "both"):
        raise NrflabError("--source-epoch and --boost early-stop both choose the source epoch; use --early-stop epoch=K")
    is_targeted = bool(cfg.get("targeted", False))
    specs = attack_specs_from_flags([str(cfg.get("attack", "pgd-linf"))], cfg.get("eps"), cfg.get("steps"),
                                    cfg.get("step_size"), targeted=is_targeted)
    assert specs is not None
    bundle = load_dataset(cfg.get("dataset") or _dataset_of(cfg["sources"][0]), root=cfg.get("data_root"))
    result, boosts, paths = run_transfer(
        [str(s) for s in cfg["sources"]], [str(t) for t in cfg["targets"]], bundle, specs[0], Path(cfg["out"]),
        boost=boost_name, early_stop=EarlyStop.parse(cfg.get("early_stop", "frac=0.9")),
        twin_candidates=[str(c) for c in cfg.get("twin_candidates") or []], source_epoch=cfg.get("source_epoch"),
        targeted=is_targeted or specs[0].targeted, target_policy=cfg.get("target_policy", "next"),
        limit=cfg.get("limit"), seed=int(cfg.get("seed", 0)), batch_size=int(cfg.get("batch_size", 256)),
        device=resolve_device(cfg.get("device", "auto")), include_self=bool(cfg.get("include_self", False)),
        resume=resume, overwrite=overwrite, progress=not quiet and sys.stderr.isatty(),
        log=lambda s: typer.echo(s, err=True))
    typer.echo(f"{'source':<28} {'targets':>7} {'success %':>9}  mean target acc %")
    for r in result.per_source():
        succ = "n/a" if not math.isfinite(r["mean_success"]) else f"{100 * r['mean_success']:.1f}"
        typer.echo(f"{r['source']:<28} {r['targets']:>7} {succ:>9}  {100 * r['mean_target_accuracy']:.1f}")
    for r in boosts:
        if r["boost"] != "none" and math.isfinite(r["gain"]):
            typer.echo(f"boost {r['boost']:<11} on {r['source']}: {100 * r['gain']:+.1f} points ({r['model']})")
    for p in paths.values():
        typer.echo(f"wrote {p}")


def _dataset_of(source: str) -> str:
    """The dataset a source run was trained on (for a default --dataset)."""
    path = Path(str(source).partition("@")[0])
    run_dir = path if path.is_dir() else (path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    try:
        return str(read_run_config(run_dir)["dataset"])
    except NrflabError:
        raise NrflabError("--dataset is required (the first source is not inside an nrflab run directory)") from None
