"""What an experiment is: typed settings with scale presets, the runs it needs, and the report it writes.

An :class:`ExperimentSpec` declares

* ``settings``: a pydantic model (``extra="forbid"``) of everything the experiment trains and measures.
  Every experiment has the common fields of :class:`ExperimentSettings` (dataset, data root, arch, width,
  device, seeds); training stages are :class:`Stage` objects, which take any training-recipe field.
* ``presets``: one validated settings object per scale -- ``cpu`` (the embedded data, minutes on a
  laptop), ``paper`` (the official CIFAR-10 settings of the paper) and ``quick`` (a seconds-long check of
  the pipeline, used by the tests).
* ``plan(settings, home)``: the runs it needs (training runs, dataset builds, ...) as engine tasks, with
  their dependencies, so independent runs can go in parallel.
* ``analyze(settings, home, context)``: the report sections, read from the finished runs.

Experiments never parse command lines: :mod:`nrflab.experiments.overrides` turns flags, ``--set`` keys
and recipe files into settings, and the one executor (:mod:`nrflab.runs.executor`) runs the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypedDict

from pydantic import BaseModel, ConfigDict, Field, create_model

from nrflab.core.validation import WIDTH_MAX, Seed
from nrflab.training import TrainConfig, make_config

if TYPE_CHECKING:
    from nrflab.experiments.engine import Task
    from nrflab.report.document import Section
    from nrflab.runs.jobs import JobResult

#: The scales a user chooses from (``cpu``, ``paper``); ``quick`` is the pipeline check the tests use.
ALL_SCALES = ("cpu", "paper", "quick")

#: Recipe fields an experiment decides itself (from its common settings or per run), never a stage.
STAGE_EXCLUDED = ("dataset", "data_root", "arch", "norm", "width", "seed", "device", "preset")

_FROZEN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

#: Settings fields that several experiments declare with one meaning (each declares its own default).
NormPair = Annotated[
    list[str], Field(min_length=2, max_length=2, description="the normalization under test, then its baseline")
]
AutoAttackSize = Annotated[
    Optional[int],
    Field(
        ge=1,
        description="AutoAttack runs on a fixed seeded subset of this many of the final images (None: all of them)",
    ),
]
LigsSigma = Annotated[float, Field(ge=0)]


def _stage_fields() -> dict[str, Any]:
    """Every training-recipe field a stage may set, as an optional field (``None``: the preset decides)."""
    return {
        name: (Optional[info.annotation], None)
        for name, info in TrainConfig.model_fields.items()
        if name not in STAGE_EXCLUDED
    }


_StageFields: type[BaseModel] = create_model("_StageFields", __config__=_FROZEN, **_stage_fields())


class Stage(_StageFields):  # type: ignore[misc,valid-type]
    """One training stage of an experiment (e.g. the twins, a source model): any field of the training
    recipe (:class:`nrflab.training.TrainConfig`) except those the experiment decides per run. Fields left
    ``None`` come from the dataset's preset; values are checked when the runs are planned."""

    def fields(self) -> dict[str, object]:
        """The fields this stage sets."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def merged(self, other: Stage | None) -> Stage:
        """This stage with ``other``'s set fields on top."""
        if other is None:
            return self
        return Stage(**{**self.fields(), **other.fields()})


#: The official scripts' CIFAR-10 training recipe (../shared/paper-notes.md): 150 epochs of SGD 0.1, momentum 0.9,
#: weight decay 5e-4, x0.1 at epochs 50 and 100, random crops and flips, PyTorch's default init.
PAPER_MILESTONES = (50, 100)
PAPER_TRAINING: Mapping[str, object] = dict(
    epochs=150,
    batch_size=128,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="multistep",
    gamma=0.1,
    augment=True,
    flip=True,
    init="torch",
)


def paper_stage(**changes: Any) -> Stage:
    """A stage with the paper's training recipe, ``changes`` on top (e.g. the per-epoch attacks)."""
    return Stage(**{**PAPER_TRAINING, "milestones": list(PAPER_MILESTONES), **changes})


class ModelScale(TypedDict):
    """The data and model of a scale's presets (the common settings ``dataset``, ``arch`` and ``width``)."""

    dataset: str
    arch: str
    width: float


#: The CPU scale's: the embedded 5,000-image MNIST subset and a half-width small CNN.
CPU_MODEL = ModelScale(dataset="mnist5k", arch="smallcnn", width=0.5)
#: The paper's: CIFAR-10 and a full-width ResNet-18.
PAPER_MODEL = ModelScale(dataset="cifar10", arch="resnet18", width=1.0)


class ExperimentSettings(BaseModel):
    """The settings every experiment has; subclasses add their own (all typed, unknown keys refused)."""

    model_config = _FROZEN

    dataset: str = Field(
        description="dataset name (any name `nrflab list` shows, with parameters), or a built dataset directory"
    )
    data_root: Optional[str] = Field(default=None, description="where file-based datasets live")
    arch: str = Field(description="architecture of every model the experiment trains")
    width: float = Field(gt=0, le=WIDTH_MAX, description="channel-width multiplier")
    device: str = Field(default="auto", description="cpu, cuda, cuda:N, mps or auto")
    seeds: list[Seed] = Field(min_length=1, description="training seeds; paired across the compared models")

    def train_config(
        self, stage: Stage, *, norm: str, seed: int, dataset: str | None = None, **fixed: Any
    ) -> TrainConfig:
        """The full recipe of one run: the common settings, then ``fixed`` (what the experiment decides for
        this run), then the stage's fields; the dataset preset fills the rest. One-line error if invalid.

        ``dataset`` replaces the settings' dataset for this run (a built feature dataset); the preset is then
        still the settings' dataset's, whether or not the built set exists yet."""
        fields: dict[str, object] = dict(
            dataset=dataset or self.dataset,
            arch=self.arch,
            width=self.width,
            device=self.device,
            norm=norm,
            seed=seed,
            **fixed,
        )
        if self.data_root is not None and dataset is None:
            fields["data_root"] = self.data_root
        fields.update(stage.fields())
        return make_config(base_dataset=self.dataset if dataset else None, **fields)


@dataclass(frozen=True)
class AnalysisContext:
    """What an experiment's analysis gets besides its settings: where it lives and what the runs returned."""

    home: Path
    progress: bool = False
    results: Mapping[str, JobResult] = field(default_factory=dict)


PlanFn = Callable[[Any, Path], "list[Task]"]
AnalyzeFn = Callable[[Any, AnalysisContext], "list[Section]"]
#: An experiment's up-front check of its resolved settings: ``(problem, fix)`` pairs, where ``fix`` is a
#: ``key=value`` assignment relative to the experiment's settings (``zoo.keep_checkpoints=1``).
CheckFn = Callable[[Any], "list[tuple[str, str]]"]


@dataclass(frozen=True)
class ExperimentSpec:
    """A registered experiment: its settings type and presets, the runs it needs, and its report.

    ``home`` is the experiment's directory under the output directory (``None``: its name; "" for the output
    directory itself); experiments that share a home may share runs (the engine runs each run directory once).
    A spec takes effect when its module registers it (``SPEC = register_experiment(ExperimentSpec(...))``).
    """

    name: str
    summary: str
    settings_type: type[BaseModel]
    presets: Mapping[str, BaseModel]
    plan: PlanFn
    analyze: AnalyzeFn
    #: The experiment's place in the chain ``nrflab reproduce`` runs (ascending; gaps leave room for new ones).
    order: int
    home: Optional[str] = None
    claims: Sequence[str] = ()
    #: Dotted settings keys that ``--epochs N`` sets (every training stage of the experiment).
    epoch_keys: tuple[str, ...] = ()
    #: Common flags this experiment has no setting for (e.g. ``arch`` for a synthetic testbed).
    ignores: tuple[str, ...] = ()
    #: A note shown in the report when a scale is not the experiment's own (e.g. no paper scale).
    scale_notes: Mapping[str, str] = field(default_factory=dict)
    #: What the chain depends on, checked before the first task (e.g. a kept checkpoint for early stop).
    check: Optional[CheckFn] = None

    def preset(self, scale: str) -> BaseModel:
        from nrflab.core.errors import NrflabError

        if scale not in self.presets:
            raise NrflabError(
                f"experiment {self.name!r} has no {scale!r} scale; choose one of {', '.join(self.presets)}"
            )
        return self.presets[scale]

    def home_dir(self, out: Path) -> Path:
        home = self.name if self.home is None else self.home
        return Path(out) / home if home else Path(out)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
