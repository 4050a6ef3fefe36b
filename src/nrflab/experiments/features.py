"""Figures 4 and 6: BN and no-BN twins trained on the feature datasets D_R, D_rand, D_det and the
conflicting set, evaluated on the ORIGINAL clean test set.

Sources: a standard model (for D_rand, D_det and the conflicting set) and an adversarially trained one
(for D_R), both with the normalization ``source_norm``. The sets are built from the training set by
:func:`nrflab.features.build_dataset`; the twins train on them and are evaluated every epoch (clean
accuracy, robust accuracy, LIGS; for the conflicting set also accuracy against (y + 1) mod C).

The feature claims are judged under two evaluation protocols (:mod:`nrflab.measure.predict`): the
paper's (BN with running statistics) and "BN with batch statistics". A BN twin trained on perturbed
images may carry running statistics that do not fit clean images and predict one class for almost every
test image; such a twin trained, so the claim *fails under* the paper's protocol (the measured outcome, not
void), and the batch-statistics protocol tells whether the features themselves were learned. The claims,
their guards and their pairing over seeds: :mod:`nrflab.experiments.features_claims`.

This module holds the experiment's ``SPEC``; its parts live beside it: the settings and presets in
:mod:`~nrflab.experiments.features_settings`, the runs in :mod:`~nrflab.experiments.features_plan` and
the analysis (tables, report text, claims judged) in :mod:`~nrflab.experiments.features_analysis`.
"""

from __future__ import annotations

from nrflab.experiments.features_analysis import analyze
from nrflab.experiments.features_analysis import robust_titles as robust_titles
from nrflab.experiments.features_plan import final_attack as final_attack
from nrflab.experiments.features_plan import plan
from nrflab.experiments.features_settings import CPU, PAPER_SCALE, QUICK, FeaturesSettings
from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import ExperimentSpec

SPEC = register_experiment(
    ExperimentSpec(
        name="features",
        summary="D_R, D_rand, D_det and conflicting sets, and twins trained on them (Figures 4 and 6)",
        settings_type=FeaturesSettings,
        presets={"cpu": CPU, "paper": PAPER_SCALE, "quick": QUICK},
        plan=plan,
        analyze=analyze,
        order=50,
        claims=("5", "2"),
        epoch_keys=("source.epochs", "robust_source.epochs", "twins.epochs"),
    )
)

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
