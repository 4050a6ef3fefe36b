"""Helpers the experiments' analyses share: the fixed test images, cells of tables over seeds, names."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nrflab.attacks import parse_attack
from nrflab.core.columns import attack_title
from nrflab.core.fmt import markdown_table, num, pct, spread
from nrflab.core.seeds import seeded_subset
from nrflab.core.stats import finite_mean
from nrflab.data import DatasetBundle, load_dataset
from nrflab.experiments.evidence import Outcomes, robust_under
from nrflab.measure.ensemble import group_by_threat
from nrflab.measure.metrics import dataset_tensors

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The seed of the fixed test subset every final model is evaluated on (the same images for every model).
TEST_SUBSET_SEED = 0

NORM_TITLES = {
    "bn": "BN",
    "none": "no BN",
    "gn": "GN",
    "ln": "LN",
    "in": "IN",
    "bn-eval": "BN (eval stats only)",
    "fixup": "Fixup",
}


def norm_title(norm: str) -> str:
    return NORM_TITLES.get(norm, norm)


def test_images(bundle: DatasetBundle, size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed evaluation images: all test images, or a seeded random ``size`` of them (sorted)."""
    x, y = dataset_tensors(bundle.test)
    idx = seeded_subset(int(y.shape[0]), size, seed=TEST_SUBSET_SEED)
    return (x, y) if idx is None else (x[idx], y[idx])


def load_bundle(settings: Any) -> DatasetBundle:
    """The dataset of an experiment's settings (``dataset`` and ``data_root``)."""
    return load_dataset(settings.dataset, root=settings.data_root)


def tensor_mean(values: object) -> float:
    """Mean of the finite entries of a tensor in double precision (NaN when there are none or it is not a tensor)."""
    return finite_mean(values.double()) if isinstance(values, torch.Tensor) else math.nan


def outcome_table(groups: Mapping[str, Sequence[Outcomes]], attacks: Sequence[str], *, framework: bool = False) -> str:
    """Clean accuracy, robust accuracy per attack and per threat's ensemble (threats with several attacks), and
    LIGS per group of per-seed outcomes (name -> outcomes), as mean (min to max) over seeds. ``framework``: the
    columns in the framework's words (usefulness, robust usefulness, robustness) with a column of seed counts."""
    labels = [parse_attack(a).label for a in attacks]
    threats = [t for t, members in group_by_threat(attacks).items() if len(members) > 1]
    robust = "robust usefulness ({})" if framework else "robust acc {}"
    header = (
        (["model", "seeds", "usefulness (clean acc)"] if framework else ["model", "clean acc"])
        + [robust.format(attack_title(lab)) for lab in labels]
        + [robust.format(t.title) for t in threats]
        + ["robustness (LIGS)" if framework else "LIGS"]
    )
    rows = [
        [name, *([len(o)] if framework else []), spread([v.accuracy() for v in o], pct)]
        + [spread([tensor_mean(v.robust_correct(lab)) for v in o], pct) for lab in labels]
        + [spread([tensor_mean(robust_under(v, attacks, t)) for v in o], pct) for t in threats]
        + [spread([tensor_mean(v.ligs) for v in o], num)]
        for name, o in groups.items()
    ]
    return markdown_table(header, rows)


def settings_text(settings: Any) -> str:
    """The settings as one line of ``key=value`` (stages as their set fields)."""
    return ", ".join(f"{key}={_short(value)}" for key, value in settings.model_dump(exclude_none=True).items())


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


def finish_figure(
    fig: Figure, ax: Axes, stem: Path, *, xlabel: str, ylabel: str, title: str | None = None, legend_size: int
) -> list[Path]:
    """Label a one-panel figure the experiments' way (axis labels, a size-9 title, a light grid, a legend), lay it
    out and write ``stem.png`` and ``stem.svg``."""
    from nrflab.report.plots import save_figure

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return save_figure(fig, stem)
