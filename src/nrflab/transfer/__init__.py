"""Transferability of adversarial examples between models, and the paper's transfer boosts.

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

from nrflab.transfer.boosts import (
    BOOSTS,
    Boost,
    BoostRow,
    EarlyStop,
    Variant,
    boost_comparison,
    boost_variants,
    find_no_bn_twin,
)
from nrflab.transfer.config import TransferConfig
from nrflab.transfer.job import TransferRun, run_transfer
from nrflab.transfer.matrix import MatrixJob, choose_targets, compute_matrix, prepare_matrix, transfer_matrix
from nrflab.transfer.outputs import (
    OutputPaths,
    boost_verdict,
    judge_boosts,
    summary_markdown,
    write_outputs,
)
from nrflab.transfer.refs import (
    DEFAULT_GROUP_KEYS,
    ModelRef,
    NamedModel,
    OutsideModelOptions,
    parse_model_spec,
    resolve_model,
)
from nrflab.transfer.results import (
    DEFINITIONS,
    GroupCell,
    GroupMatrix,
    GroupSummary,
    ModelInfo,
    PairNumbers,
    PairResult,
    SourceFacts,
    SourceSummary,
    TargetFacts,
    TransferResult,
    TransferSettings,
)
from nrflab.transfer.store import TransferDir, check_transfer_output

__all__ = [
    "BOOSTS",
    "Boost",
    "BoostRow",
    "DEFAULT_GROUP_KEYS",
    "DEFINITIONS",
    "EarlyStop",
    "GroupCell",
    "GroupMatrix",
    "GroupSummary",
    "MatrixJob",
    "ModelInfo",
    "ModelRef",
    "NamedModel",
    "OutputPaths",
    "OutsideModelOptions",
    "PairNumbers",
    "PairResult",
    "SourceFacts",
    "SourceSummary",
    "TargetFacts",
    "TransferConfig",
    "TransferDir",
    "TransferResult",
    "TransferRun",
    "TransferSettings",
    "Variant",
    "boost_comparison",
    "boost_variants",
    "boost_verdict",
    "check_transfer_output",
    "choose_targets",
    "compute_matrix",
    "find_no_bn_twin",
    "judge_boosts",
    "parse_model_spec",
    "prepare_matrix",
    "resolve_model",
    "run_transfer",
    "summary_markdown",
    "transfer_matrix",
    "write_outputs",
]
