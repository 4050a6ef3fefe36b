"""The typed results of a transfer matrix: one record per (source, target) pair, facts about each source
and target, and the summaries computed from them (per source, per source group, group x group cells).

A :class:`TransferResult` holds its pairs in a dict keyed by ``(source name, target name)``, so a pair is
found in constant time; every summary is computed from the pairs with :mod:`nrflab.core.stats` (Wilson
intervals for proportions, t-intervals across models). ``TransferResult.to_dict()`` gives the JSON
record; every other record here is written by :func:`nrflab.core.records.to_json`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, field, replace
from functools import cached_property
from typing import Any, Literal

from nrflab.core.records import FLAT, Forward, json_key, record, to_json
from nrflab.core.stats import mean_ci, wilson
from nrflab.measure.transfer_rate import DEFINITIONS as RATE_DEFINITIONS
from nrflab.measure.transfer_rate import TransferRate

Interval = tuple[float, float]
"""A 95 % interval ``(low, high)``; ``(nan, nan)`` when undefined."""

PairMetric = Literal["transfer_success", "target_accuracy"]

DEFINITIONS: Mapping[str, str] = {
    "target_accuracy": "the target's accuracy (true labels) on all adversarial examples crafted on the source",
    **RATE_DEFINITIONS,
    "whitebox_success": "among examples the source classifies correctly when clean, the fraction the attack "
    "fools on the source itself",
    "target_policy": "targeted attacks aim at (y+1) mod C ('next') or at a class drawn uniformly from the C-1 "
    "wrong classes with the run's seed ('random')",
    "ci": "95 % Wilson intervals for proportions; for group averages over seeds, a t-interval across models",
    "self_pairs": "a model is its own target when both come from the same run directory or file (e.g. an "
    "early-stopped checkpoint and the final model of one run); such pairs are in the matrix "
    "but left out of averages unless include_self=True",
}
"""What each reported number means (written into every record and summary)."""


def _interval(values: Sequence[Any]) -> Interval:
    lo, hi = values
    return (math.nan if lo is None else float(lo), math.nan if hi is None else float(hi))


@record
class TransferSettings:
    """Everything that determines the cached numbers, besides the models' weights."""

    attack: str
    targeted: bool
    target_policy: str
    seed: int
    num_samples: int
    data: str

    def changed_fields(self, recorded: Mapping[str, Any]) -> list[str]:
        """The fields whose recorded value (e.g. from a manifest) differs from this one."""
        return [k for k, v in asdict(self).items() if recorded.get(k) != v]


@record
class ModelInfo:
    """Where a source or target came from: its name, group, origin (run directory, file or reference)."""

    name: str
    group: str
    origin: str
    path: str | None = None
    epoch: int | None = None
    run_dir: str | None = None


@record
class TargetFacts:
    """A target model on the clean data (a source has these facts too)."""

    model: ModelInfo = field(metadata=FLAT)
    clean_accuracy: float
    clean_correct: int

    name = Forward[str]("model")
    group = Forward[str]("model")
    origin = Forward[str]("model")


@record
class SourceFacts(TargetFacts):
    """A source model attacked white-box: its clean facts, and how often the attack fools it."""

    fooled: int
    whitebox_success: float
    whitebox_ci: Interval
    robust_accuracy: float


@record
class PairNumbers:
    """What one target does on one source's adversarial examples (see ``DEFINITIONS``)."""

    target_clean_accuracy: float
    target_clean_correct: int
    target_accuracy: float
    target_accuracy_ci: Interval
    eligible: int
    successes: int
    transfer_success: float
    transfer_success_ci: Interval

    @classmethod
    def count(cls, *, clean_correct: int, adv_correct: int, total: int, eligible: int, successes: int) -> PairNumbers:
        """The proportions and their Wilson intervals from the counts."""
        rate = TransferRate(eligible=eligible, successes=successes)
        return cls(
            target_clean_accuracy=clean_correct / total,
            target_clean_correct=clean_correct,
            target_accuracy=adv_correct / total,
            target_accuracy_ci=wilson(adv_correct, total),
            eligible=eligible,
            successes=successes,
            transfer_success=rate.rate,
            transfer_success_ci=rate.ci,
        )

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PairNumbers:
        """Read back ``to_json(numbers)`` output (a KeyError/TypeError/ValueError for a malformed record)."""
        return cls(
            target_clean_accuracy=float(record["target_clean_accuracy"]),
            target_clean_correct=int(record["target_clean_correct"]),
            target_accuracy=float(record["target_accuracy"]),
            target_accuracy_ci=_interval(record["target_accuracy_ci"]),
            eligible=int(record["eligible"]),
            successes=int(record["successes"]),
            transfer_success=math.nan if record["transfer_success"] is None else float(record["transfer_success"]),
            transfer_success_ci=_interval(record["transfer_success_ci"]),
        )


@record
class PairResult:
    """One (source, target) cell of the matrix. ``is_self``: both models come from the same run or file."""

    source: str
    target: str
    source_group: str
    target_group: str
    is_self: bool = field(metadata=json_key("self"))
    numbers: PairNumbers = field(metadata=FLAT)

    transfer_success = Forward[float]("numbers")
    target_accuracy = Forward[float]("numbers")

    def metric(self, name: PairMetric) -> float:
        """``transfer_success`` or ``target_accuracy``."""
        if name == "transfer_success":
            return self.transfer_success
        if name == "target_accuracy":
            return self.target_accuracy
        raise KeyError(name)


@record
class SourceSummary:
    """A source's transfer averaged over its counted targets: mean of per-pair rates (t-interval across
    targets) and the pooled rate over all eligible examples (Wilson interval)."""

    source: str
    group: str
    targets: int
    mean_success: float
    ci_across_targets: Interval
    pooled_success: float
    pooled_ci: Interval
    mean_target_accuracy: float


@record
class GroupSummary:
    """A source group (e.g. ``smallcnn/bn``): the mean over its sources (seeds) of each source's average,
    with a t-interval across sources."""

    group: str
    sources: int
    mean_success: float
    ci: Interval
    mean_target_accuracy: float
    target_accuracy_ci: Interval


@record
class GroupCell:
    """Source group x target group: the mean of a pair metric over counted pairs, t-interval across them."""

    mean: float
    ci: Interval
    pairs: int


@record
class GroupMatrix:
    """Cells by source group (rows) and target group (columns)."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: tuple[tuple[GroupCell, ...], ...]


@record
class TransferResult:
    """The matrix: per-source and per-target facts, and one :class:`PairResult` per (source, target)."""

    settings: TransferSettings
    sources: tuple[SourceFacts, ...]
    targets: tuple[TargetFacts, ...]
    pairs: Mapping[tuple[str, str], PairResult]
    include_self: bool = False
    definitions: Mapping[str, str] = field(default_factory=lambda: dict(DEFINITIONS))

    def pair(self, source: str, target: str) -> PairResult:
        """The pair of ``source`` and ``target`` (by name); KeyError when either is not in the matrix."""
        return self.pairs[(source, target)]

    @cached_property
    def _sources_by_name(self) -> dict[str, SourceFacts]:
        return {s.name: s for s in self.sources}

    @cached_property
    def _targets_by_name(self) -> dict[str, TargetFacts]:
        return {t.name: t for t in self.targets}

    def source(self, name: str) -> SourceFacts:
        """A source's facts by name (KeyError if absent)."""
        return self._sources_by_name[name]

    def target(self, name: str) -> TargetFacts:
        """A target's facts by name (KeyError if absent)."""
        return self._targets_by_name[name]

    def row(self, source: str) -> list[PairResult]:
        """The pairs of one source, in target order."""
        return [self.pairs[(source, t.name)] for t in self.targets]

    def matrix(self, metric: PairMetric = "transfer_success") -> list[list[float]]:
        """Rows = sources, columns = targets, values of ``metric``."""
        return [[p.metric(metric) for p in self.row(s.name)] for s in self.sources]

    def counted(self, pair: PairResult) -> bool:
        """Whether a pair enters averages (self pairs only with ``include_self``)."""
        return self.include_self or not pair.is_self

    def select(self, sources: Iterable[str]) -> TransferResult:
        """The same matrix restricted to the named sources (in this result's order)."""
        keep = set(sources)
        unknown = keep - set(self._sources_by_name)
        if unknown:
            raise KeyError(sorted(unknown)[0])
        return replace(
            self,
            sources=tuple(s for s in self.sources if s.name in keep),
            pairs={k: p for k, p in self.pairs.items() if k[0] in keep},
        )

    def per_source(self, targets: Iterable[str] | None = None) -> list[SourceSummary]:
        """Each source's mean transfer success and target accuracy over its counted targets, with intervals.

        ``targets`` restricts the average to those target names (e.g. a target set common to several
        variants of a source)."""
        wanted = None if targets is None else set(targets)
        rows = []
        for s in self.sources:
            ps = [p for p in self.row(s.name) if self.counted(p) and (wanted is None or p.target in wanted)]
            mean, lo, hi = mean_ci([p.transfer_success for p in ps])
            k, n = sum(p.numbers.successes for p in ps), sum(p.numbers.eligible for p in ps)
            rows.append(
                SourceSummary(
                    source=s.name,
                    group=s.group,
                    targets=len(ps),
                    mean_success=mean,
                    ci_across_targets=(lo, hi),
                    pooled_success=k / n if n else math.nan,
                    pooled_ci=wilson(k, n),
                    mean_target_accuracy=mean_ci([p.target_accuracy for p in ps])[0],
                )
            )
        return rows

    def per_source_group(self) -> list[GroupSummary]:
        """Per source group: the mean over its sources (seeds) of each source's average over targets."""
        by_group: dict[str, list[SourceSummary]] = {}
        for r in self.per_source():
            by_group.setdefault(r.group, []).append(r)
        rows = []
        for g, rs in by_group.items():
            succ = mean_ci([r.mean_success for r in rs])
            acc = mean_ci([r.mean_target_accuracy for r in rs])
            rows.append(
                GroupSummary(
                    group=g,
                    sources=len(rs),
                    mean_success=succ[0],
                    ci=(succ[1], succ[2]),
                    mean_target_accuracy=acc[0],
                    target_accuracy_ci=(acc[1], acc[2]),
                )
            )
        return rows

    def group_matrix(self, metric: PairMetric = "transfer_success") -> GroupMatrix:
        """Source group x target group cells: mean of ``metric`` over counted pairs with a t-interval."""
        rows = tuple(dict.fromkeys(s.group for s in self.sources))
        cols = tuple(dict.fromkeys(t.group for t in self.targets))
        values: dict[tuple[str, str], list[float]] = {}
        for p in self.pairs.values():
            if self.counted(p):
                values.setdefault((p.source_group, p.target_group), []).append(p.metric(metric))
        cells = []
        for a in rows:
            row = []
            for b in cols:
                vals = values.get((a, b), [])
                m, lo, hi = mean_ci(vals)
                row.append(GroupCell(mean=m, ci=(lo, hi), pairs=len(vals)))
            cells.append(tuple(row))
        return GroupMatrix(rows, cols, tuple(cells))

    def to_dict(self) -> dict[str, object]:
        """The JSON record (NaN stays NaN here; writers turn it into null)."""
        gm = self.group_matrix()
        return {
            "definitions": dict(self.definitions),
            "settings": to_json(self.settings),
            "include_self": self.include_self,
            "sources": to_json(self.sources),
            "targets": to_json(self.targets),
            "pairs": [to_json(self.pairs[(s.name, t.name)]) for s in self.sources for t in self.targets],
            "matrices": {
                "rows": [s.name for s in self.sources],
                "columns": [t.name for t in self.targets],
                "target_accuracy": self.matrix("target_accuracy"),
                "transfer_success": self.matrix("transfer_success"),
            },
            "per_source": to_json(self.per_source()),
            "per_source_group": to_json(self.per_source_group()),
            "group_matrix": {
                "rows": list(gm.rows),
                "columns": list(gm.columns),
                "transfer_success": to_json(gm.cells),
            },
        }


__all__ = ["Interval"]
