"""Final numbers of each planted run (reliance, robust accuracy, LIGS; cached next to the run) and the
table of every run's numbers by (set, normalization, seed)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nrflab.attacks import Attack, AttackSpec
from nrflab.core.io import atomic_write_json
from nrflab.data.planted import PlantedSpec, make_views
from nrflab.experiments.planted.runs import PlantedRun
from nrflab.experiments.planted.settings import EVAL_FILE, Settings
from nrflab.experiments.planted.text import name as norm_name
from nrflab.measure.framework import image_outcomes
from nrflab.measure.health import Health, top_class
from nrflab.measure.predict import predict
from nrflab.measure.reliance import RelianceViews, reliance
from nrflab.models.checkpoint import load_model
from nrflab.runs.rundir import RunDir


@functools.lru_cache(maxsize=4)
def full_views(spec: PlantedSpec) -> RelianceViews:
    return RelianceViews.from_samples(make_views(spec))


def cached_result(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
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


def pgd_l2(model: torch.nn.Module, *, eps: float, steps: int) -> Attack:
    """The experiment's PGD-L2 (the default step 2.5 eps / steps, no random start, as the paper's evaluation);
    eps 0 or 0 steps leave the images clean (the identity, as such a PGD would)."""
    clean = eps == 0 or steps == 0
    return (AttackSpec(kind="none") if clean else AttackSpec(kind="pgd-l2", eps=eps, steps=steps)).build(model)


#: Classes of every planted set.
CLASSES = 10
#: Version of the measured row (bump when its columns change, so cached rows are recomputed).
ROW_VERSION = 2


def health_columns(model: torch.nn.Module, run_dir: Path, views: RelianceViews) -> dict[str, float]:
    """What the guard needs of one model (:func:`nrflab.experiments.guard.check`): its final training
    accuracy, whether its final loss and metrics are finite, and the share of its most frequent prediction
    on the agree view (``agree_top``, its class ``agree_top_class``)."""
    last = RunDir(run_dir).read_metrics()[-1]
    values = [last.get("train_loss", math.nan), last.get("train_acc", math.nan), last.get("clean_acc", math.nan)]
    top, share = top_class(predict(model, views.agree_x, batch_size=250))
    return {
        "train_acc": float(last.get("train_acc", math.nan)),
        "finite": float(all(math.isfinite(v) for v in values)),
        "agree_top": share,
        "agree_top_class": float(top),
    }


def measure(run: PlantedRun, run_dir: Path, s: Settings) -> dict[str, float]:
    """Final numbers of one run (cached): reliance on the full views and the guard's columns
    (:func:`health_columns`); for conflicting runs the accuracy vs y and y+1 on the agree view; for
    operating-point runs robust accuracy and LIGS."""
    key = {
        "version": ROW_VERSION,
        "test": s.test,
        "eval_size": s.eval_size,
        "eps": list(s.eval_eps),
        "steps": s.pgd_steps,
        "robust": run.robust,
        "shifted": run.shifted,
    }

    def compute() -> dict[str, float]:
        model = load_model(run_dir)
        views = full_views(run.spec)
        row = {**reliance(model, views).as_row(), **health_columns(model, run_dir, views)}
        if run.shifted:
            pred = predict(model, views.agree_x, batch_size=250)
            row["acc_y"] = float((pred == views.agree_y).float().mean())
            row["acc_y1"] = float((pred == (views.agree_y + 1) % run.spec.classes).float().mean())
        if run.robust:
            x, y = views.agree_x[: s.eval_size], views.agree_y[: s.eval_size]
            seen = image_outcomes(
                model,
                x,
                y,
                attacks=[(f"{eps:g}", pgd_l2(model, eps=eps, steps=s.pgd_steps)) for eps in s.eval_eps],
                ligs_sigma=0.01,
                seed=0,
                batch_size=max(int(y.shape[0]), 1),  # each attack on all images at once, as before
            )
            row.update({f"robust_{eps}": float(ok.float().mean()) for eps, ok in seen.robust.items()})
            row["ligs"] = seen.ligs.ligs if seen.ligs is not None else math.nan
        return row

    return cached_result(run_dir / EVAL_FILE, key, compute)


@dataclass(frozen=True)
class Measured:
    """Final numbers of every run, by (key, norm, seed), with each run's directory."""

    values: dict[tuple[str, str, int], dict[str, float]]
    dirs: dict[tuple[str, str, int], Path]

    def seeds(self, key: str, norm: str) -> list[int]:
        return sorted(sd for k, n, sd in self.values if k == key and n == norm)

    def common_seeds(self, key: str, norms: Sequence[str]) -> list[int]:
        """The seeds every norm of ``norms`` has for ``key``, increasing."""
        return sorted(set.intersection(*(set(self.seeds(key, n)) for n in norms)))

    def series(self, key: str, norm: str, metric: str, seeds: Sequence[int] | None = None) -> list[float]:
        seeds = self.seeds(key, norm) if seeds is None else seeds
        return [self.values[(key, norm, sd)].get(metric, math.nan) for sd in seeds]

    def learned_seeds(
        self, key: str, norms: Sequence[str], minimum: float, seeds: Sequence[int] | None = None
    ) -> list[int]:
        """The seeds (of ``seeds``, else those every norm has) where every norm's model learned the set: agree
        accuracy at least ``minimum`` (the planted ``learned_min``, :data:`nrflab.measure.health.THRESHOLDS`)."""
        common = self.common_seeds(key, norms) if seeds is None else seeds
        return [sd for sd in common if all(self.values[(key, n, sd)]["agree_acc"] >= minimum for n in norms)]

    def health(self, key: str, norm: str, seed: int, *, view: str, accuracy: str = "agree_acc") -> Health:
        """The guard's record of one model (:class:`~nrflab.measure.health.Health`) on ``view``, its
        accuracy there being the column ``accuracy`` ("conflicting": the better of acc vs y and y+1)."""
        row = self.values[(key, norm, seed)]
        acc = (
            max(row.get("acc_y", math.nan), row.get("acc_y1", math.nan))
            if accuracy == "conflicting"
            else row.get(accuracy, math.nan)
        )
        return Health(
            f"{norm_name(norm)} {key} seed {seed}",
            CLASSES,
            row.get("train_acc", math.nan),
            acc,
            int(row.get("agree_top_class", -1)),
            row.get("agree_top", 0.0),
            bool(row.get("finite", 1.0)) and math.isfinite(row.get("agree_acc", math.nan)),
            "paper",
            view,
        )

    def healths(self, key: str, norms: Sequence[str], seeds: Sequence[int], **kw: str) -> list[Health]:
        """:meth:`health` of every (norm, seed) of ``key``."""
        return [self.health(key, n, sd, **kw) for sd in seeds for n in norms if (key, n, sd) in self.values]


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
