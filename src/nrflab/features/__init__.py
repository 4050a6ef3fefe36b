"""Feature datasets of Ilyas et al. and of the paper: D_R, D_NR, D_rand, D_det and the conflicting set.

``build_dataset(kind, source, dataset, out)`` writes a dataset directory (safetensors shards plus a
``dataset.json`` card) that ``load_dataset(out)`` reads like any other dataset. Every builder is one
``nrflab.attacks.PGD`` run: the inversions (D_R, D_NR) descend ``||rep(z) - rep(x_ref)||_2`` from a
different random training image, the targeted builders descend the cross-entropy toward a target class.

Building is sharded and resumable: all randomness of shard ``s`` comes from ``(seed, s)`` only, each
shard is written atomically, so a killed build resumed with ``resume=True`` equals an uninterrupted one.

Modules: ``settings`` (kinds, paper defaults, :class:`BuildSettings`), ``source`` (the source model and its
representation), ``builder`` (inputs and shards), ``build`` (the directory: card, shards, resume).
"""

from nrflab.features.build import BuildResult, ShardCallback, build_dataset
from nrflab.features.builder import BuildInputs, ShardBuilder, prepare_inputs, quantize, shard_generator
from nrflab.features.settings import (
    BUILD_KINDS,
    DTYPES,
    INVERSION_KINDS,
    KIND_DEFAULTS,
    KIND_DESCRIPTIONS,
    LABEL_POLICIES,
    TARGETED_KINDS,
    BuildSettings,
    make_settings,
)
from nrflab.features.source import Representation, Source, load_source, sha256_file

__all__ = [
    "BUILD_KINDS",
    "BuildInputs",
    "BuildResult",
    "BuildSettings",
    "DTYPES",
    "INVERSION_KINDS",
    "KIND_DEFAULTS",
    "KIND_DESCRIPTIONS",
    "LABEL_POLICIES",
    "Representation",
    "ShardBuilder",
    "ShardCallback",
    "Source",
    "TARGETED_KINDS",
    "build_dataset",
    "load_source",
    "make_settings",
    "prepare_inputs",
    "quantize",
    "sha256_file",
    "shard_generator",
]
