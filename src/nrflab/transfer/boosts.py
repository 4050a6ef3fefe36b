"""The paper's transfer boosts (claim 6: robust features transfer better) and their comparison.

A boost replaces a source by a model an attacker could use instead: the source's **no-BN twin** (the run
with the same arch, width, seed and recipe but norm ``none``, see :func:`find_no_bn_twin`), an
**early-stopped** checkpoint of the source (:class:`EarlyStop`), or **both**. :func:`boost_variants`
lists the variants of each given source; :func:`boost_comparison` compares them on a common target set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

from nrflab.core.errors import NrflabError
from nrflab.core.records import record
from nrflab.runs.rundir import RunDir
from nrflab.transfer.refs import (
    DEFAULT_GROUP_KEYS,
    GroupKeys,
    ModelRef,
    OutsideModelOptions,
    resolve_model,
    run_group,
)
from nrflab.transfer.results import Interval, TransferResult

Boost = Literal["none", "no-bn-twin", "early-stop", "both"]
BOOSTS: tuple[str, ...] = get_args(Boost)

TWIN_IGNORED = frozenset(
    {
        "norm",
        "init",
        "device",
        "data_root",
        "keep_checkpoints",
        "eval_attacks",
        "ligs",
        "ligs_sigma",
        "eval_size",
        "eval_batch_size",
        "eval_shifted_labels",
        "channels_last",
        "resolved",
    }
)
"""Config keys a no-BN twin may differ in; every other key (arch, width, seed, the recipe) must match."""


def find_no_bn_twin(run_dir: str | Path, candidates: Iterable[str | Path]) -> Path:
    """The run among ``candidates`` (run dirs, or folders holding run dirs) identical to ``run_dir`` but
    with norm ``none``. A run that already has norm ``none`` is its own twin."""
    run = RunDir(run_dir)
    cfg = run.read_config()
    if cfg.get("norm") == "none":
        return run.path
    mine = {k: v for k, v in cfg.items() if k not in TWIN_IGNORED}
    found = []
    for cand in _candidate_runs(candidates):
        other = cand.read_config()
        if other.get("norm") == "none" and {k: v for k, v in other.items() if k not in TWIN_IGNORED} == mine:
            found.append(cand.path)
    unique = sorted({p.resolve(): p for p in found}.values())
    if not unique:
        raise NrflabError(
            f"no no-BN twin of {run.path} (same arch, width, seed and recipe with norm 'none') "
            "among the candidate runs; give it explicitly"
        )
    if len(unique) > 1:
        raise NrflabError(f"several no-BN twins of {run.path}: {', '.join(map(str, unique))}; give one explicitly")
    return unique[0]


def _candidate_runs(candidates: Iterable[str | Path]) -> list[RunDir]:
    runs = []
    for c in map(Path, candidates):
        if RunDir(c).config_path.is_file():
            runs.append(RunDir(c))
        elif c.is_dir():
            runs.extend(RunDir(p.parent) for p in sorted(c.glob(f"*/{RunDir.CONFIG}")))
    return runs


@dataclass(frozen=True)
class EarlyStop:
    """How to pick an early-stopped source checkpoint among a run's kept epochs.

    ``epoch=K``: epoch K. ``frac=X``: the earliest kept epoch whose clean accuracy reaches X times the
    final clean accuracy. ``ligs=F``: the kept epoch with the highest LIGS among those with clean
    accuracy >= F (needs a run trained with LIGS on). Epoch 0 (the untrained model) is never chosen
    by a criterion.
    """

    kind: Literal["epoch", "frac", "ligs"] = "frac"
    value: float = 0.9

    @classmethod
    def parse(cls, text: str) -> EarlyStop:
        """``epoch=K``, ``frac=X`` or ``ligs=F`` (one-line errors for anything else)."""
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or key not in ("epoch", "frac", "ligs"):
            raise NrflabError(f"bad early-stop rule {text!r}; use epoch=K, frac=X (e.g. 0.9) or ligs=FLOOR (e.g. 0.9)")
        try:
            v = float(value)
        except ValueError:
            raise NrflabError(f"bad early-stop value in {text!r}") from None
        if key == "epoch" and not (math.isfinite(v) and v.is_integer() and v >= 0):
            raise NrflabError(f"early-stop epoch must be a whole number >= 0, got {value.strip()!r}")
        if key != "epoch" and not 0 < v <= 1:
            raise NrflabError(f"early-stop {key} must be in (0, 1], got {v}")
        return cls(key, v)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}={int(self.value) if self.kind == 'epoch' else self.value:g}"

    def select(self, run_dir: str | Path) -> int:
        """The chosen epoch of ``run_dir`` (only kept epochs count)."""
        run = RunDir(run_dir)
        if self.kind == "epoch":
            run.model_file(int(self.value))
            return int(self.value)
        kept = set(run.kept_epochs())
        metrics = run.read_metrics()
        rows = [r for r in metrics if int(r["epoch"]) in kept and int(r["epoch"]) > 0]
        if not rows:
            raise NrflabError(f"run {run.path} kept no checkpoints after epoch 0; train it with --keep-checkpoints N")
        if self.kind == "frac":
            final = metrics[-1]["clean_acc"]
            ok = [r for r in rows if r["clean_acc"] >= self.value * final]
            if not ok:
                raise NrflabError(f"no kept epoch of {run.path} reaches {self.value:g} of its final clean accuracy")
            return int(min(ok, key=lambda r: r["epoch"])["epoch"])
        if not all("ligs" in r and math.isfinite(r["ligs"]) for r in rows):
            raise NrflabError(f"run {run.path} recorded no LIGS (trained with --no-ligs); use epoch= or frac=")
        ok = [r for r in rows if r["clean_acc"] >= self.value]
        if not ok:
            raise NrflabError(f"no kept epoch of {run.path} has clean accuracy >= {self.value:g}")
        return int(max(ok, key=lambda r: (r["ligs"], -r["epoch"]))["epoch"])


@dataclass(frozen=True)
class Variant:
    """A source as the attacker would use it under one boost: which model, derived from which given source."""

    boost: str
    base: str
    ref: ModelRef


def check_boost(boost: str) -> str:
    if boost not in BOOSTS:
        raise NrflabError(f"unknown boost {boost!r}; choose one of {', '.join(BOOSTS)}")
    return boost


def boost_variants(
    sources: Sequence[ModelRef],
    *,
    boost: str = "none",
    candidates: Iterable[str | Path] = (),
    early_stop: EarlyStop = EarlyStop(),
    twins: Mapping[str, str | Path] | None = None,
    group_keys: GroupKeys = DEFAULT_GROUP_KEYS,
    options: OutsideModelOptions = OutsideModelOptions(),
) -> list[Variant]:
    """The source variants to compare: always the given source (``none``), plus the boosted ones.

    ``no-bn-twin``: the twin (``twins[source name]``, any model reference, loaded with ``options`` when it
    is from outside nrflab; else the run found among ``candidates``); ``early-stop``: the source's
    checkpoint chosen by ``early_stop``; ``both``: all four combinations (run directories only).
    """
    check_boost(boost)
    candidates = list(candidates)
    out = []
    for src in sources:
        out.append(Variant("none", src.name, src))
        if boost == "none":
            continue
        given = (twins or {}).get(src.name)
        if src.run_dir is None and not (boost == "no-bn-twin" and given):
            raise NrflabError(
                f"boost {boost!r} needs sources that are run directories (or, for no-bn-twin, a --twin); "
                f"{src.name} is not"
            )
        if boost in ("no-bn-twin", "both"):
            out.append(Variant("no-bn-twin", src.name, _twin(src, given, candidates, group_keys, options)))
        if boost in ("early-stop", "both"):
            assert src.run_dir is not None
            out.append(Variant("early-stop", src.name, _early(src.run_dir, early_stop, group_keys)))
        if boost == "both":
            twin = out[-2].ref
            if twin.run_dir is None:
                raise NrflabError(f"boost 'both' needs a twin that is a run directory; {twin.name} is not")
            out.append(Variant("both", src.name, _early(twin.run_dir, early_stop, group_keys)))
    return out


def _twin(
    src: ModelRef, given: str | Path | None, candidates: list[str | Path], keys: GroupKeys, options: OutsideModelOptions
) -> ModelRef:
    """The no-BN twin of ``src``: the given reference or the run found among ``candidates``; a twin run
    is taken at the source's epoch when the source is not its run's final model."""
    twin = Path(given) if given else find_no_bn_twin(cast(Path, src.run_dir), candidates)
    at_epoch = None
    if src.run_dir is not None and src.path != RunDir(src.run_dir).model_path and twin.is_dir():
        at_epoch = src.epoch
    return resolve_model(str(twin) if given else twin, epoch=at_epoch, group_keys=keys, options=options)


def _early(run_dir: Path, rule: EarlyStop, keys: GroupKeys) -> ModelRef:
    epoch = rule.select(run_dir)
    ref = resolve_model(run_dir, epoch=epoch, group_keys=keys)
    return ref.with_group(run_group(RunDir(run_dir), keys) + "@early")


@record
class BoostRow:
    """One variant of a given source: its mean transfer success over the targets common to all variants
    of that source, and its gain over the source as given (``boost == 'none'``)."""

    source: str
    boost: str
    model: str
    epoch: int | None
    targets: int
    mean_success: float
    pooled_ci: Interval
    gain: float
    mean_target_accuracy: float


def boost_comparison(result: TransferResult, variants: Sequence[Variant]) -> list[BoostRow]:
    """Per given source and boost: mean transfer success over a common target set (targets that are no
    variant's own run, unless self pairs are counted)."""
    by_base: dict[str, list[Variant]] = {}
    for v in variants:
        by_base.setdefault(v.base, []).append(v)
    rows = []
    for base, vs in by_base.items():
        mine = {result.source(v.ref.name).origin for v in vs}
        common = [t.name for t in result.targets if t.origin not in mine or result.include_self]
        per = {r.source: r for r in result.per_source(common)}
        base_rate = per[vs[0].ref.name].mean_success
        for v in vs:
            r = per[v.ref.name]
            rows.append(
                BoostRow(
                    source=base,
                    boost=v.boost,
                    model=v.ref.name,
                    epoch=v.ref.epoch,
                    targets=r.targets,
                    mean_success=r.mean_success,
                    pooled_ci=r.pooled_ci,
                    gain=r.mean_success - base_rate,
                    mean_target_accuracy=r.mean_target_accuracy,
                )
            )
    return rows


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
