"""Lives here: how the Ilyas et al. feature datasets (D_R, D_NR, D_rand, D_det) and the conflicting set are built, and their cards.
Never here: reading a built set back (``nrflab.data.built``), the attacks themselves (``nrflab.attacks``).
To add one: a kind is a key of ``KIND_DEFAULTS`` with its ``AttackSpec`` and a builder branch in ``builder.py``.

Feature datasets of Ilyas et al. and of the paper: D_R, D_NR, D_rand, D_det and the conflicting set.

``build_dataset(kind, source, dataset, out)`` writes a dataset directory (safetensors shards plus a
``dataset.json`` card) that ``load_dataset(out)`` reads like any other dataset. Every builder is one
``nrflab.attacks.PGD`` run: the inversions (D_R, D_NR) descend ``||rep(z) - rep(x_ref)||_2`` from a
different random training image, the targeted builders descend the cross-entropy toward a target class.

Building is sharded and resumable: all randomness of shard ``s`` comes from ``(seed, s)`` only, each
shard is written atomically, so a killed build resumed with ``resume=True`` equals an uninterrupted one.

Modules: ``settings`` (kinds, paper defaults, :class:`BuildSettings`), ``source`` (the source model and its
representation), ``builder`` (inputs and shards), ``build`` (the directory: card, shards, resume).
"""

from nrflab.features.build import build_dataset
from nrflab.features.builder import quantize
from nrflab.features.settings import BUILD_KINDS, KIND_DEFAULTS, LABEL_POLICIES, make_settings
from nrflab.features.source import sha256_file

__all__ = [
    "BUILD_KINDS",
    "KIND_DEFAULTS",
    "LABEL_POLICIES",
    "build_dataset",
    "make_settings",
    "quantize",
    "sha256_file",
]
