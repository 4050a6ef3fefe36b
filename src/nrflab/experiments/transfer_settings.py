"""The transfer experiment's settings and presets: the zoo (the settings' ``arch`` plus ``other_archs``, each
with and without BN, every seed), the checkpoints it keeps, the attack whose transfer is measured and the
early-stop rule, with the ``cpu``, ``quick`` and ``paper`` presets :mod:`nrflab.experiments.transfer`
registers.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nrflab.experiments.spec import CPU_MODEL, PAPER_MODEL, ExperimentSettings, NormPair, Stage, paper_stage
from nrflab.transfer import EarlyStop
from nrflab.transfer.config import EarlyStopRule

#: The attack whose transfer the CPU presets measure.
CPU_ATTACK = "pgd-linf:eps=0.1,step=0.025,steps=10"
EARLY_RULE = EarlyStop("frac", 0.9)


class ZooArch(BaseModel):
    """One more architecture of the zoo (besides the settings' ``arch``/``width``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str
    width: float = Field(gt=0)


class TransferExperimentSettings(ExperimentSettings):
    """The zoo (``arch`` plus ``other_archs``, each with and without BN, every seed), its checkpoints, and
    the attack whose transfer is measured."""

    other_archs: list[ZooArch] = Field(default_factory=list)
    norms: NormPair = Field(default_factory=lambda: ["bn", "none"])
    zoo: Stage = Field(
        default_factory=Stage,
        description="the zoo's training recipe (keep_checkpoints: the "
        "epochs whose checkpoints attack, for the early-stopping boost)",
    )
    train_size: Optional[int] = Field(default=None, ge=1, description="seeded random subset of the training set")
    limit: int = Field(default=500, ge=1, description="attacked test images")
    attack: str = CPU_ATTACK
    early_stop: EarlyStopRule = Field(
        default=str(EARLY_RULE),
        description="the early-stopped checkpoint: epoch=K (a kept epoch, fixed before judging: the cpu preset's "
        "choice) or a rule such as frac=0.9",
    )

    @field_validator("norms")
    @classmethod
    def _bn_and_its_baseline(cls, value: list[str]) -> list[str]:
        if value != ["bn", "none"]:
            raise ValueError("the transfer claims compare BN sources with no-normalization sources: norms [bn, none]")
        return value


def _zoo_stage(epochs: int, *, keep: int = 1) -> Stage:
    return Stage(epochs=epochs, eval_attacks=[], ligs=False, keep_checkpoints=keep)


# Five paired seeds per claim. A first five-seed run with 4 epochs on 3,000 images left the no-BN sources
# under-trained (smallcnn 57 % training accuracy at the end, 19 % at epoch 2), so the zoo trains 6 epochs on all
# 4,000 training images as the two-seed preset before it did, and the early checkpoint is epoch 3 (fixed here
# before judging); 300 attacked images. One epoch on 4,000 images takes about 5.8 s (smallcnn 0.5) and 7.6 s
# (vgg11 0.25) on one core: the 20 runs train in about 800 s.
CPU = TransferExperimentSettings(
    **CPU_MODEL,
    device="cpu",
    seeds=[0, 1, 2, 3, 4],
    other_archs=[ZooArch(arch="vgg11", width=0.25)],
    zoo=_zoo_stage(6, keep=3),
    train_size=None,
    limit=300,
    attack=CPU_ATTACK,
    early_stop="epoch=3",
)
QUICK_SETTINGS = TransferExperimentSettings(
    **CPU_MODEL,
    device="cpu",
    seeds=[0, 1],
    zoo=_zoo_stage(2),
    train_size=1000,
    limit=100,
    attack="pgd-linf:eps=0.1,step=0.04,steps=5",
    early_stop="epoch=1",
)
PAPER_SCALE = TransferExperimentSettings(
    **PAPER_MODEL,
    seeds=[1337, 1338],
    zoo=paper_stage(eval_attacks=[], ligs=False, keep_checkpoints=10),
    limit=1000,
    attack="pgd-linf:eps=8/255,step=2/255,steps=20",
)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
