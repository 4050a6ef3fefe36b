"""A whole transfer job from a :class:`TransferConfig`: resolve and check everything, then (holding the
output directory's lock) compute the matrix for the sources and their boosted variants, compare the
boosts, and write the plain files.

Nothing is written before every input is checked: the models resolve and fit the data, the attack,
seed and device are valid, and the output directory is neither an input nor someone else's results.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nrflab.core.errors import NrflabError
from nrflab.data import load_dataset
from nrflab.transfer.boosts import BoostRow, Variant, boost_comparison, boost_variants
from nrflab.transfer.config import TransferConfig
from nrflab.transfer.matrix import DataLike, compute_matrix, prepare_matrix
from nrflab.transfer.outputs import OutputPaths, write_outputs
from nrflab.transfer.refs import DEFAULT_GROUP_KEYS, GroupKeys, ModelRef, recorded_dataset, resolve_model
from nrflab.transfer.results import TransferResult
from nrflab.transfer.store import check_transfer_output, open_store


@dataclass(frozen=True)
class TransferRun:
    """What a transfer job produced: the matrix, the boost comparison (empty without a boost), the files."""

    config: TransferConfig
    result: TransferResult
    variants: tuple[Variant, ...]
    boosts: tuple[BoostRow, ...]
    paths: OutputPaths


def _default_dataset(config: TransferConfig, first_source: ModelRef) -> str:
    if config.dataset:
        return config.dataset
    found = recorded_dataset(first_source)
    if found is None:
        raise NrflabError("--dataset is required (the first source is not an nrflab run that recorded its dataset)")
    return found


def run_transfer(
    config: TransferConfig,
    *,
    out_dir: str | Path | None = None,
    data: DataLike | None = None,
    twins: Mapping[str, str | Path] | None = None,
    group_keys: GroupKeys = DEFAULT_GROUP_KEYS,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TransferRun:
    """Run the transfer job ``config`` describes into ``out_dir`` (default ``config.out``).

    ``data`` replaces the dataset named in the config (tensors, a Dataset or a bundle); ``twins`` names
    a source's no-BN twin explicitly (source name -> model reference), beside the config's ``twins``. With ``resume``, results already in
    the directory under the same settings are reused; with ``overwrite`` they are recomputed (the old ones
    are kept until the first new result is written, and come back if the job fails before).
    """
    out_text = out_dir if out_dir is not None else config.out
    if out_text is None:
        raise NrflabError("no output directory given (--out DIR)")
    out = check_transfer_output(out_text)
    options = config.model_options()
    refs = [resolve_model(s, epoch=config.source_epoch, group_keys=group_keys, options=options) for s in config.sources]
    candidates: list[str | Path] = list(config.twin_candidates)
    if not candidates:
        candidates = sorted({r.run_dir.parent for r in refs if r.run_dir is not None})
    own = {**user_twins(config, refs), **(twins or {})}
    variants = boost_variants(
        refs, boost=config.boost, candidates=candidates, early_stop=config.early_stop_rule(), twins=own,
        group_keys=group_keys, options=options,
    )  # fmt: skip
    unique = list({v.ref.name: v.ref for v in variants}.values())
    if data is None:
        data = load_dataset(_default_dataset(config, refs[0]), root=config.data_root)
    job = prepare_matrix(
        unique,
        config.targets,
        data,
        config.attack_spec(),
        targeted=config.is_targeted,
        target_policy=config.target_policy,
        group_keys=group_keys,
        model_options=options,
        limit=config.limit,
        seed=config.seed,
        batch_size=config.batch_size,
        device=config.device,
        include_self=config.include_self,
    )
    with open_store(out, job.settings, resume=resume, overwrite=overwrite) as store:
        result = compute_matrix(job, store, progress=progress)
        boosts = tuple(boost_comparison(result, variants)) if config.boost != "none" else ()
        paths = write_outputs(result, out, boosts=boosts, recipe=config.model_dump(mode="json"))
    return TransferRun(config, result, tuple(variants), boosts, paths)


def user_twins(config: TransferConfig, refs: Sequence[ModelRef]) -> dict[str, str]:
    """The config's ``--twin SOURCE=TWIN`` pairs keyed by the resolved source's name (``refs`` are the
    config's sources, in order; the config already checked that each SOURCE is one of them)."""
    names = {os.path.normpath(text): ref.name for text, ref in zip(config.sources, refs, strict=True)}
    return {names[os.path.normpath(source)]: twin for source, twin in config.twin_pairs()}


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
