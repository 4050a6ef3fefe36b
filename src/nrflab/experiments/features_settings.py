"""The settings of the feature-dataset experiment (:mod:`nrflab.experiments.features`) and its presets.

:class:`BuildGroup` says how the feature datasets D_R, D_rand, D_det and the conflicting set are built;
:class:`FeaturesSettings` adds the sources, the twins trained on every set and the final evaluation. The
presets ``CPU``, ``QUICK`` and ``PAPER_SCALE`` are written out under ``recipes/features/``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from nrflab.data.defaults import PAPER_EVAL_ATTACKS
from nrflab.experiments.spec import (
    CPU_MODEL,
    PAPER_MODEL,
    AutoAttackSize,
    ExperimentSettings,
    LigsSigma,
    NormPair,
    Stage,
    paper_stage,
)

SETS = ("d_r", "d_rand", "d_det", "conflicting")
SET_TITLES = {"d_r": "D_R", "d_rand": "D_rand", "d_det": "D_det", "conflicting": "conflicting"}
SetName = Literal["d_r", "d_rand", "d_det", "conflicting"]


class BuildGroup(BaseModel):
    """How the feature datasets are built (every field changes the images; see ``nrflab build-dataset``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    limit: Optional[int] = Field(default=2000, ge=1, description="training images per set (None: all)")
    seed: int = Field(default=0, ge=0)
    nrf_eps: float = Field(default=2.0, gt=0, description="D_rand / D_det / conflicting: targeted PGD-L2 radius")
    nrf_steps: int = Field(default=40, ge=1)
    nrf_step_size: float = Field(default=0.25, gt=0)
    inv_steps: int = Field(default=100, ge=1, description="D_R: representation-inversion steps")
    inv_step_size: float = Field(default=0.2, gt=0)
    inv_eps: float = Field(default=1000.0, gt=0, description="D_R: inversion radius (1000: unbounded)")
    fake_relu: bool = Field(default=False, description="D_R: gradients pass the last ReLU unchanged (official code)")
    inv_label_policy: Literal["target", "reference", "prediction"] = Field(
        default="target", description="D_R labels: Ilyas's y (target) or the source's prediction (official code)"
    )


def _both_protocols() -> list[Literal["paper", "batch-stats"]]:
    return ["paper", "batch-stats"]


class FeaturesSettings(ExperimentSettings):
    """Sources, feature datasets and the twins trained on them."""

    sets: list[SetName] = Field(default_factory=lambda: list(SETS), min_length=1)  # type: ignore[arg-type]
    norms: NormPair = Field(default_factory=lambda: ["bn", "none"])
    source_norm: str = "bn"
    source_seed: int = Field(default=0, ge=0)
    source: Stage = Field(default_factory=Stage, description="the standard source model's recipe")
    robust_source: Stage = Field(default_factory=Stage, description="the adversarially trained source's recipe")
    build: BuildGroup = Field(default_factory=BuildGroup)
    twins: Stage = Field(default_factory=Stage, description="the twins' recipe on every set")
    per_set: dict[SetName, Stage] = Field(
        default_factory=dict, description="per-set changes to the twins' recipe (the paper's learning rates)"
    )
    test_size: Optional[int] = Field(default=None, ge=1, description="fixed clean test images of the final evaluation")
    protocols: list[Literal["paper", "batch-stats"]] = Field(default_factory=_both_protocols, min_length=1)
    final_autoattack: Optional[str] = Field(
        default="apgd-ce+apgd-dlr",
        description="AutoAttack added to the final evaluation at the threat model of the robust column's attack: "
        "its attacks (a custom version, e.g. apgd-ce+apgd-t), 'standard', or None (PGD only)",
    )
    autoattack_size: AutoAttackSize = None
    ligs_sigma: LigsSigma = 0.01
    turn_epoch: int = Field(
        default=2,
        ge=1,
        description="conflicting set: the early epoch at which BN's accuracy vs y+1 is compared with the last "
        "epoch's (fixed before judging)",
    )


CPU_CURVE_ATTACK = "pgd-l2:eps=1.0,step=0.4,steps=5"
# Five paired seeds per comparative claim. A first five-seed run with 1,000-image sets and 8 epochs left twins
# under-trained (a BN D_rand twin at 31 % training accuracy) and one no-BN conflicting twin memorized its set
# (one class on clean images), so the sets are 1,500 images and the twins train 10 epochs; D_det, which no claim
# judges, is left out at this scale (the paper preset keeps it) to pay for it. One twin epoch on 1,500 images
# with 100 evaluation images takes about 5.6 s on one core: 30 twins in about 1,700 s. The turn claim compares
# epoch 2 with the last (10), fixed here before judging.
CPU = FeaturesSettings(
    **CPU_MODEL,
    seeds=[0, 1, 2, 3, 4],
    sets=["d_r", "d_rand", "conflicting"],
    source=Stage(epochs=15, eval_size=250, eval_attacks=[], ligs=False),
    robust_source=Stage(
        epochs=5, eval_size=250, eval_attacks=[], ligs=False, adv_train="pgd-l2", adv_eps=1.5, adv_steps=5
    ),
    build=BuildGroup(limit=1500),
    twins=Stage(epochs=10, eval_size=100, eval_attacks=[CPU_CURVE_ATTACK]),
    # The paper: lr 0.01 for D_R and D_rand, 0.1 for D_det and the conflicting set. D_R gets 0.05 here, as 0.01
    # leaves it under-trained in 10 epochs. Larger runs (4,000 images, width 1.0, 30 epochs) memorize the
    # conflicting set whatever the learning rate (0.01-0.1), warm-up or augmentation: the twins then predict one
    # class on clean images and the guard voids the claims; weight_decay=5e-3 for that set avoids it.
    per_set={"d_r": Stage(lr=0.05), "d_rand": Stage(lr=0.01), "d_det": Stage(lr=0.1), "conflicting": Stage(lr=0.1)},
    test_size=500,
    autoattack_size=200,
    turn_epoch=2,
)
QUICK = FeaturesSettings(
    dataset="mnist5k",
    arch="smallcnn",
    width=0.25,
    seeds=[0],
    source=Stage(epochs=1, eval_size=48, eval_attacks=[], ligs=False),
    robust_source=Stage(
        epochs=1, eval_size=48, eval_attacks=[], ligs=False, adv_train="pgd-l2", adv_eps=1.5, adv_steps=1
    ),
    build=BuildGroup(limit=96, nrf_steps=4, nrf_step_size=0.5, inv_steps=4, inv_step_size=0.5),
    twins=Stage(epochs=1, eval_size=48, eval_attacks=["pgd-l2:eps=1.0,step=0.5,steps=2"]),
    test_size=200,
    final_autoattack=None,  # the quick check leaves AutoAttack out (PGD only)
    turn_epoch=1,
)
PAPER_SCALE = FeaturesSettings(
    **PAPER_MODEL,
    seeds=[1337],
    source_seed=1337,
    source=paper_stage(eval_attacks=[], ligs=False),
    robust_source=paper_stage(
        eval_attacks=[],
        ligs=False,
        adv_train="targeted-l2",
        adv_eps=0.5,
        adv_steps=7,
        adv_step_size=0.1,
        attack_mode="train",
    ),
    build=BuildGroup(
        limit=None,
        nrf_eps=0.5,
        nrf_steps=100,
        nrf_step_size=0.1,
        inv_steps=1000,
        inv_step_size=0.1,
        inv_eps=1000.0,
        fake_relu=True,
        inv_label_policy="prediction",
    ),
    twins=paper_stage(eval_attacks=list(PAPER_EVAL_ATTACKS)),
    per_set={
        "d_r": Stage(lr=0.01),
        "d_rand": Stage(lr=0.01),
        "d_det": Stage(lr=0.1, augment=False),
        "conflicting": Stage(lr=0.1),
    },
    final_autoattack="standard",
    turn_epoch=10,
)
