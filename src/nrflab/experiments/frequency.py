"""The frequency lens as a claim: BN shifts a model's sensitivity toward high frequencies.

Each final model's Fourier heat map (:func:`nrflab.measure.fourier.fourier_heat_map`) is measured on the
first ``lens.images`` fixed test images (a seeded subset, the same for every model and seed) and condensed
into its *high-frequency share*: the share of the excess error mass (error above the clean error, each
basis image once) at radial frequencies above ``lens.high_from`` times Nyquist. The band split, eps, the
grid and the images are declared in the experiment's preset (:class:`FrequencyLens`) before anything is
measured. The claim is judged on share(BN) - share(no normalization), paired over seeds, through the one
verdict rule; each model is guarded on the view the heat map is measured on (its clean predictions on
those images).

One measurement task per model (:func:`heat_map_task`) runs in the executor's pool; its result is cached
in the run directory (``fourier_<digest>.json``, keyed by the model file, the images and the lens), so a
second chain only reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from nrflab.core.fmt import markdown_table, num, spread
from nrflab.core.io import atomic_write_text
from nrflab.core.records import to_json
from nrflab.core.stats import Verdict
from nrflab.experiments.analysis import norm_title
from nrflab.experiments.claims import Claim, judge_claim, register_claim
from nrflab.experiments.engine import CallTask
from nrflab.experiments.evidence import Outcomes, compare_scalars
from nrflab.experiments.guard import check, healths
from nrflab.measure.fourier import FourierHeatMap, fourier_heat_map
from nrflab.measure.health import Health
from nrflab.measure.predict import PAPER
from nrflab.report.document import Section, verdict_line
from nrflab.report.fourier_plots import plot_heat_maps


class FrequencyLens(BaseModel):
    """The heat-map measurement behind the high-frequency claim, declared before the run."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = Field(default=True, description="measure the heat maps and judge the high-frequency claim")
    images: int = Field(default=200, ge=1, description="fixed test images each heat map is measured on")
    eps: float = Field(default=4.0, gt=0, description="L2 norm of the Fourier basis perturbation (per channel)")
    stride: int = Field(default=2, ge=1, description="evaluate every stride-th frequency per axis (1: full grid)")
    high_from: float = Field(
        default=0.5, ge=0, le=1.5, description="high band: radial frequency above this fraction of Nyquist"
    )
    freeze: bool = Field(default=True, description="run a frozen TorchScript graph when it predicts as the model")
    batch_size: int = Field(default=512, ge=1, description="perturbed images per forward pass")

    def band_split(self, size: int) -> float:
        """The band split in cycles per image for ``size x size`` images (Nyquist is ``size / 2``)."""
        return self.high_from * size / 2


LENS_TITLE = "Where the twins are fragile: Fourier heat maps"
FAMILY_TITLE = "The normalization family in the Fourier lens"

#: The view the lens's guard checks each model on.
VIEW = "the heat map's clean test images, paper protocol"

FREQUENCY_FAMILY = "frequency: high-frequency sensitivity"
_COMMON = dict(
    family=FREQUENCY_FAMILY,
    paper="Not a claim of the paper: the NRF view predicts that BN's non-robust features sit at high frequencies "
    "(Yin et al. 2019, Fourier heat maps)",
    quantity="share(with) - share(without); share = the heat map's excess error mass above the declared band "
    "split, per seed, on the same fixed test images",
    unit="share",
    protocol=PAPER.title,
    guard="both learned (the heat map's clean test images, paper protocol)",
)
CORE_CLAIM = register_claim(
    id="core.frequency",
    experiment="core",
    text="{with} puts a larger share of its Fourier-heat-map error at high frequencies",
    models=("BN twin", "no-BN twin"),
    **_COMMON,
)
FAMILY_CLAIM = register_claim(
    id="family.frequency",
    experiment="family",
    text="{with} puts a larger share of its Fourier-heat-map error at high frequencies than no normalization",
    models=("standard model with the normalization", "standard model without normalization"),
    **_COMMON,
)


# ---------------------------------------------------------------------------------------------
# Measurement (one engine task per model, cached in the run directory)


def cache_path(run_dir: str | Path, x: torch.Tensor, y: torch.Tensor, lens: FrequencyLens) -> Path:
    """Where :func:`measure_heat_map` keeps a run's heat map for these images and this lens."""
    from nrflab.features import sha256_file
    from nrflab.runs.rundir import RunDir

    run = RunDir(run_dir)
    h = hashlib.sha256(json.dumps(lens.model_dump(exclude={"enabled", "batch_size"}), sort_keys=True).encode())
    h.update(sha256_file(run.model_path).encode())
    h.update(x.contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().tobytes())
    return run.path / f"fourier_{h.hexdigest()[:16]}.json"


@dataclass(frozen=True)
class Measured:
    """One model's heat map and its clean outcomes on the heat map's images (the guard's view)."""

    heat_map: FourierHeatMap
    outcomes: Outcomes


def heat_map(run_dir: str | Path, x: torch.Tensor, y: torch.Tensor, lens: FrequencyLens, device: str) -> Measured:
    """The heat map of the run's final model on ``(x, y)`` (cached; measured when missing)."""
    from nrflab.core.validation import resolve_device
    from nrflab.measure.predict import predict
    from nrflab.models.checkpoint import load_model

    path = cache_path(run_dir, x, y, lens)
    if not path.is_file():
        model = load_model(Path(run_dir), resolve_device(device)).eval()
        found = fourier_heat_map(
            model, x, y, eps=lens.eps, stride=lens.stride, freeze=lens.freeze, batch_size=lens.batch_size,
            name=Path(run_dir).name,
        )  # fmt: skip
        predictions = predict(model, x, batch_size=lens.batch_size).cpu()
        atomic_write_text(path, json.dumps({"heat_map": to_json(found), "predictions": predictions.tolist()}))
    data = json.loads(path.read_text())
    outcomes = Outcomes(PAPER.name, y.cpu().long(), torch.tensor(data["predictions"], dtype=torch.long))
    return Measured(_from_json(data["heat_map"]), outcomes)


def _from_json(d: dict[str, Any]) -> FourierHeatMap:
    """A heat map back from its JSON (the file boundary)."""
    return FourierHeatMap(
        model=str(d["model"]),
        eps=float(d["eps"]),
        n_images=int(d["n_images"]),
        per_channel=bool(d["per_channel"]),
        seed=int(d["seed"]),
        clean_error=float(d["clean_error"]),
        clean_loss=float(d["clean_loss"]),
        freqs_y=tuple(int(k) for k in d["freqs_y"]),
        freqs_x=tuple(int(k) for k in d["freqs_x"]),
        error=tuple(tuple(float(v) for v in row) for row in d["error"]),
        loss_increase=tuple(tuple(float(v) for v in row) for row in d["loss_increase"]),
    )


def _images(dataset: str, data_root: str | None, lens: FrequencyLens) -> tuple[torch.Tensor, torch.Tensor]:
    from nrflab.data import load_dataset
    from nrflab.experiments.analysis import test_images

    return test_images(load_dataset(dataset, root=data_root), lens.images)


def measure_heat_map(
    *, run_dir: str, dataset: str, data_root: str | None, lens: dict[str, object], device: str, progress: bool = False
) -> str:
    """What the engine task calls: :func:`heat_map` on the experiment's fixed test images."""
    settings = FrequencyLens.model_validate(lens)
    heat_map(run_dir, *_images(dataset, data_root, settings), settings, device)
    return run_dir


def heat_map_done(*, run_dir: str, dataset: str, data_root: str | None, lens: dict[str, object], device: str) -> bool:
    """Whether :func:`measure_heat_map` would only read its cache."""
    from nrflab.runs.rundir import RunDir

    settings = FrequencyLens.model_validate(lens)
    if not RunDir(run_dir).model_path.is_file():
        return False
    return cache_path(run_dir, *_images(dataset, data_root, settings), settings).is_file()


def heat_map_tasks(run_keys: Sequence[str], s: LensSettings) -> list[CallTask]:
    """One measurement task per run (none when the lens is off)."""
    if not s.frequency.enabled:
        return []
    kwargs = dict(dataset=s.dataset, data_root=s.data_root, lens=s.frequency.model_dump(), device=s.device)
    return [
        CallTask(
            f"{key}#fourier",
            "nrflab.experiments.frequency:measure_heat_map",
            {"run_dir": key, **kwargs},
            after=(key,),
            done_target="nrflab.experiments.frequency:heat_map_done",
        )
        for key in run_keys
    ]


# ---------------------------------------------------------------------------------------------
# Analysis: shares, guard, verdicts, the report section


def share(measured: Measured, lens: FrequencyLens) -> float:
    """The high-frequency share of one model's heat map under the lens's band split."""
    m = measured.heat_map
    return m.high_frequency_share(lens.band_split(min(len(m.freqs_y), len(m.freqs_x))))


def guarded(name: str, runs: Sequence[str], found: Sequence[Measured], *, num_classes: int) -> list[Health]:
    """Per-seed health of one model group on the heat map's view."""
    return healths(name, runs, [m.outcomes for m in found], num_classes=num_classes, view=VIEW)


def judge(
    claim: Claim,
    *,
    norm: str,
    baseline: str,
    shares: dict[str, list[float]],
    healths: dict[str, list[Health]],
    seeds: Sequence[int],
) -> Verdict:
    """The high-frequency verdict of ``norm`` against ``baseline`` from per-seed shares, paired by seed."""
    c = compare_scalars(shares[norm], shares[baseline], seeds=seeds, note="each seed's heat-map share")
    names = {"with": norm_title(norm), "without": "no normalization" if baseline == "none" else norm_title(baseline)}
    text = (
        f"High-frequency share of the heat map's excess error {num(c.a)} with {names['with']} vs {num(c.b)} with "
        f"{names['without']}."
    )
    guard = check(learners=[*healths[norm], *healths[baseline]])
    return judge_claim(claim, c, text, guard=guard, seeds=seeds, **names)


class LensSettings(Protocol):
    """What the lens reads from an experiment's settings."""

    @property
    def dataset(self) -> str: ...
    @property
    def data_root(self) -> str | None: ...
    @property
    def device(self) -> str: ...
    @property
    def seeds(self) -> list[int]: ...
    @property
    def frequency(self) -> FrequencyLens: ...


def section(
    claim: Claim, s: LensSettings, runs: dict[str, list[str]], *, title: str, baseline: str, stem: Path
) -> list[Section]:
    """The lens's report section from per-normalization runs (aligned with ``s.seeds``): the first seed's maps
    side by side, the shares over seeds, the verdicts (one per normalization other than ``baseline`` and
    ``bn-eval``). Empty when the lens is off."""
    from nrflab.data import load_dataset

    lens = s.frequency
    if not lens.enabled or baseline not in runs:
        return []
    x, y = _images(s.dataset, s.data_root, lens)
    classes = load_dataset(s.dataset, root=s.data_root).num_classes
    found = {n: [heat_map(r, x, y, lens, s.device) for r in rs] for n, rs in runs.items()}
    shares = {n: [share(m, lens) for m in ms] for n, ms in found.items()}
    healths = {n: guarded(f"{norm_title(n)} model", runs[n], ms, num_classes=classes) for n, ms in found.items()}
    subjects = [n for n in runs if n not in (baseline, "bn-eval")]
    verdicts = [
        judge(claim, norm=n, baseline=baseline, shares=shares, healths=healths, seeds=s.seeds) for n in subjects
    ]
    maps = [replace(found[n][0].heat_map, model=f"{norm_title(n)} (seed {s.seeds[0]})") for n in runs]
    figures = [p for p in plot_heat_maps(maps, stem) if p.suffix == ".png"]
    split = lens.band_split(len(x[0, 0]))
    rows_of = found[baseline][0].heat_map.rows()
    area = sum(r[2] > split for r in rows_of) / len(rows_of)
    rows = [[norm_title(n), len(shares[n]), spread(shares[n], num), ", ".join(num(v) for v in shares[n])] for n in runs]
    text = [
        f"Fourier heat maps (Yin et al. 2019) of each final model on the same {len(y)} fixed test images: "
        f"eps {lens.eps:g} (L2 of the unit basis image per channel), frequencies at multiples of {lens.stride} "
        "cycles per axis, images clipped to [0,1]. Share: the excess error mass (error above clean) at radial "
        f"frequency above {split:g} cycles per image ({lens.high_from:g} of Nyquist, declared in the preset); a map "
        f"with the same excess error at every frequency has share {num(area)} (the high band's share of the "
        f"evaluated frequencies), so a saturated map says little. Maps: seed {s.seeds[0]}, one colour scale.",
        "",
        markdown_table(["model", "seeds", "high-frequency share", "per seed"], rows),
        "",
        "**Claims**",
        "",
        *[verdict_line(v) for v in verdicts],
    ]
    return [Section(title, "\n".join(text), figures, verdicts)]


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
