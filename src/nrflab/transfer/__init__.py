"""Lives here: how well adversarial examples transfer -- the typed transfer config, source/target references, the matrix, the boosts, the per-pair store and its outputs.
Never here: the definition of an attack (``nrflab.attacks``), predictions (``nrflab.measure``).
To add one: a boost is a function in ``boosts.py`` selected by ``TransferConfig.boost``.

Transferability of adversarial examples between models, and the paper's transfer boosts.

The pipeline, one module per concept:

* :mod:`~nrflab.transfer.refs` -- which models: run directories (``RUN@epoch=K``), model files, user
  modules (:class:`NamedModel`), models from outside nrflab; each becomes a :class:`ModelRef`;
* :mod:`~nrflab.transfer.boosts` -- the no-BN twin and early-stopped checkpoints, and their comparison;
* :mod:`~nrflab.transfer.matrix` -- crafting once per source and evaluating every target
  (:func:`transfer_matrix`);
* :mod:`~nrflab.transfer.store` -- the output directory: layout, result cache, lock and safe overwrite;
* :mod:`~nrflab.transfer.results` -- the typed results (:class:`TransferResult`, :class:`PairResult`, ...);
* :mod:`~nrflab.transfer.outputs` -- the plain files (JSON, CSV, heat maps, summary.md);
* :mod:`~nrflab.transfer.config` and :mod:`~nrflab.transfer.job` -- the recipe (:class:`TransferConfig`)
  and the whole job (:func:`run_transfer`).

Statistics (Wilson and t-intervals, the verdict rule) come from :mod:`nrflab.core.stats`.
"""

from nrflab.transfer.boosts import EarlyStop, find_no_bn_twin
from nrflab.transfer.config import TransferConfig
from nrflab.transfer.job import run_transfer
from nrflab.transfer.matrix import compute_matrix, prepare_matrix, transfer_matrix
from nrflab.transfer.outputs import OutputPaths, write_outputs
from nrflab.transfer.refs import ModelRef, NamedModel, resolve_model
from nrflab.transfer.results import PairNumbers, PairResult, SourceFacts, TargetFacts, TransferResult, TransferSettings

__all__ = [
    "EarlyStop",
    "ModelRef",
    "NamedModel",
    "OutputPaths",
    "PairNumbers",
    "PairResult",
    "SourceFacts",
    "TargetFacts",
    "TransferConfig",
    "TransferResult",
    "TransferSettings",
    "compute_matrix",
    "find_no_bn_twin",
    "prepare_matrix",
    "resolve_model",
    "run_transfer",
    "transfer_matrix",
    "write_outputs",
]
