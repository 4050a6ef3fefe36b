"""The plain files of a transfer job, written from the typed results in one place: ``transfer.json``
(the full record), ``pairs.csv``, one CSV and one heat map (PNG + SVG) per matrix, and ``summary.md``.
Also the number formats the summary and the experiment's report share.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nrflab.core.fmt import attack_text, ci, ci_phrase, markdown_table, pct, points
from nrflab.core.io import atomic_write_json, atomic_write_text, write_csv
from nrflab.core.records import to_json
from nrflab.core.stats import Verdict, judge, one_sample_test
from nrflab.transfer.boosts import BoostRow
from nrflab.transfer.results import PairMetric, PairResult, TransferResult
from nrflab.transfer.store import TransferDir

METRIC_TITLES: dict[PairMetric, str] = {
    "transfer_success": "transfer success % (eligible examples)",
    "target_accuracy": "target accuracy % on transferred examples",
}
PAIR_COLUMNS = (
    "source",
    "target",
    "source_group",
    "target_group",
    "self",
    "target_clean_accuracy",
    "target_accuracy",
    "eligible",
    "successes",
    "transfer_success",
    "transfer_success_ci",
)
#: The columns of ``pairs.csv``: an interval field becomes two, ``<name>_lo`` and ``<name>_hi`` (one number a cell).
PAIR_CSV_COLUMNS = tuple(part for c in PAIR_COLUMNS for part in ((f"{c}_lo", f"{c}_hi") if c.endswith("_ci") else (c,)))


def _cell(p: PairResult) -> str:
    return f"{pct(p.transfer_success, unit=False)} ({p.numbers.eligible}){'*' if p.is_self else ''}"


def judge_boosts(boosts: Sequence[BoostRow]) -> list[tuple[str, Verdict]]:
    """Per boost: does it raise transfer success? The mean gain over the given sources with its t-interval
    and p-value (the source is the unit: each source's gain is already averaged over its common targets),
    judged by the one rule (helped/hurt only when the interval excludes zero). A tool summary about the
    sources given, not a claim about models replicated over seeds: the experiments judge those."""
    verdicts = []
    for b in dict.fromkeys(r.boost for r in boosts if r.boost != "none"):
        gains = [r.gain for r in boosts if r.boost == b and math.isfinite(r.gain)]
        if not gains:
            continue
        m, lo, hi, p, n = one_sample_test(gains)
        helped = sum(g > 0 for g in gains)
        verdict = judge(
            f"{b} raises transfer success",
            m,
            lo,
            hi,
            f"mean gain {points(m)} points{ci_phrase((lo, hi))}, higher success for {helped}/{len(gains)} sources",
            protocol="gain = mean transfer success over common targets of the boosted source minus "
            "the source as given; t-interval across sources",
            p=p,
            method=f"95 % t-interval over {n} source{'s' if n != 1 else ''}",
        )
        verdicts.append((b, verdict))
    return verdicts


def boost_verdict(boosts: Sequence[BoostRow]) -> str:
    """Which boost helped, as Markdown bullet lines (see :func:`judge_boosts`)."""
    words = {"agrees": "helped", "disagrees": "hurt", "inconclusive": "no clear effect (the interval includes 0)"}
    lines = [f"- **{b}**: {words.get(v.outcome, v.word)}: {v.evidence}." for b, v in judge_boosts(boosts)]
    return "\n".join(lines) if lines else "No boost was compared."


def _no_values_note(result: TransferResult) -> list[str]:
    """A line per heat map with no value to show (every pair n/a): its figure shows a note, not colours."""
    lines = []
    for metric, title in METRIC_TITLES.items():
        if not any(math.isfinite(v) for row in result.matrix(metric) for v in row):
            lines += [f'Every pair\'s {title} is n/a: its heat map shows the note "no values" instead.', ""]
    return lines


def _titled(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], note: Sequence[str] = ()) -> list[str]:
    """One table of the summary: its ``###`` title, a blank line, any ``note`` lines, the table."""
    return [f"### {title}", "", *note, markdown_table(header, rows)]


def _preamble(result: TransferResult) -> list[str]:
    """The summary's opening lines: the attack and its sample, then every definition the tables rely on."""
    d = result.definitions
    s = result.settings
    return [
        f"Attack `{attack_text(s.attack)}` ({'targeted, ' + s.target_policy if s.targeted else 'untargeted'}), "
        f"{s.num_samples} test images, seed {s.seed}.",
        "",
        f"- **Target accuracy**: {d['target_accuracy']}.",
        f"- **Eligible examples**: {d['eligible']}.",
        f"- **Transfer success**: {d['transfer_success']}.",
        f"- **Self pairs**: {d['self_pairs']}.",
        f"- **Intervals**: {d['ci']}.",
    ]


def _models_part(result: TransferResult) -> list[str]:
    """The sources (clean accuracy and white-box success) and the targets (clean accuracy)."""
    return [
        *_titled(
            "Sources (white-box)",
            ["source", "group", "clean acc %", "white-box success %", "95 % CI", "fooled"],
            [
                [
                    r.name,
                    r.group,
                    pct(r.clean_accuracy, unit=False),
                    pct(r.whitebox_success, unit=False),
                    ci(r.whitebox_ci),
                    r.fooled,
                ]
                for r in result.sources
            ],
        ),
        "",
        *_titled(
            "Targets (clean)",
            ["target", "group", "clean acc %", "clean correct"],
            [[r.name, r.group, pct(r.clean_accuracy, unit=False), r.clean_correct] for r in result.targets],
        ),
    ]


def _matrices_part(result: TransferResult) -> list[str]:
    """The two source-by-target matrices: transfer success (with eligible counts) and target accuracy."""
    names = [t.name for t in result.targets]
    return [
        *_titled(
            "Transfer success % (rows: sources, columns: targets; * = self pair)",
            ["source \\ target", *names],
            [[sr.name, *[_cell(p) for p in result.row(sr.name)]] for sr in result.sources],
            note=_no_values_note(result),
        ),
        "",
        *_titled(
            "Target accuracy % on the transferred examples",
            ["source \\ target", *names],
            [[sr.name, *[pct(p.target_accuracy, unit=False) for p in result.row(sr.name)]] for sr in result.sources],
        ),
    ]


def _averages_part(result: TransferResult) -> list[str]:
    """Per-source averages over targets (pooled intervals), then per source group (t-intervals over seeds)."""
    return [
        *_titled(
            "Per-source average over targets",
            ["source", "group", "targets", "mean success %", "pooled %", "pooled 95 % CI", "mean target acc %"],
            [
                [
                    r.source,
                    r.group,
                    r.targets,
                    pct(r.mean_success, unit=False),
                    pct(r.pooled_success, unit=False),
                    ci(r.pooled_ci),
                    pct(r.mean_target_accuracy, unit=False),
                ]
                for r in result.per_source()
            ],
        ),
        "",
        *_titled(
            "Per source group (mean over seeds of the per-source average)",
            ["source group", "sources", "mean success %", "95 % CI (t)", "mean target acc %"],
            [
                [r.group, r.sources, pct(r.mean_success, unit=False), ci(r.ci), pct(r.mean_target_accuracy, unit=False)]
                for r in result.per_source_group()
            ],
        ),
    ]


def _boosts_part(boosts: Sequence[BoostRow]) -> list[str]:
    """Every variant of every source on the same targets, and which boost helped (see :func:`boost_verdict`)."""
    return [
        *_titled(
            "Boosts (same targets for every variant of a source)",
            ["source", "boost", "model used", "targets", "mean success %", "pooled 95 % CI", "gain (points)"],
            [
                [
                    r.source,
                    r.boost,
                    r.model,
                    r.targets,
                    pct(r.mean_success, unit=False),
                    ci(r.pooled_ci),
                    points(r.gain),
                ]
                for r in boosts
            ],
        ),
        "",
        boost_verdict(boosts),
    ]


def summary_markdown(result: TransferResult, boosts: Sequence[BoostRow] = ()) -> str:
    """A short Markdown summary: definitions, the matrix, per-source averages with CIs, boost effects
    (each part one function; parts are separated by a blank line)."""
    parts = [_preamble(result), _models_part(result), _matrices_part(result), _averages_part(result)]
    if boosts:
        parts.append(_boosts_part(boosts))
    return "\n\n".join("\n".join(part) for part in parts) + "\n"


@dataclass(frozen=True)
class OutputPaths:
    """The files :func:`write_outputs` wrote."""

    json: Path
    pairs_csv: Path
    transfer_success_csv: Path
    target_accuracy_csv: Path
    transfer_success_png: Path
    target_accuracy_png: Path
    summary: Path

    def all(self) -> list[Path]:
        """Every file, in the order of the fields."""
        return [getattr(self, f.name) for f in fields(self)]


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def _pair_csv_row(full: Mapping[str, object]) -> dict[str, str]:
    """One row of ``pairs.csv``: every cell one number or word; an interval ``(lo, hi)`` as two cells."""
    row: dict[str, str] = {}
    for c in PAIR_COLUMNS:
        if c.endswith("_ci"):
            interval = full[c]
            if not isinstance(interval, (list, tuple)):
                raise TypeError(f"{c} is not an interval: {interval!r}")
            lo, hi = interval
            row[f"{c}_lo"], row[f"{c}_hi"] = _csv_cell(lo), _csv_cell(hi)
        else:
            row[c] = _csv_cell(full[c])
    return row


def jsonable(obj: Any) -> Any:
    """NaN -> None (strict JSON), tuples -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def _write_matrix_csv(
    path: Path, rows: Sequence[str], columns: Sequence[str], matrix: Sequence[Sequence[float]]
) -> None:
    """A matrix as CSV: a ``source`` column, then one column per target (positional, so any names work)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source", *columns])
    for name, values in zip(rows, matrix, strict=True):
        writer.writerow([name, *[_csv_cell(v) for v in values]])
    atomic_write_text(path, buf.getvalue())


def write_outputs(
    result: TransferResult,
    out_dir: str | Path,
    *,
    boosts: Sequence[BoostRow] = (),
    recipe: Mapping[str, object] | None = None,
) -> OutputPaths:
    """Write transfer.json (with the boosts and the recipe, when given), pairs.csv, the matrix CSVs, the two
    heat maps (PNG + SVG) and summary.md."""
    from nrflab.report.plots import plot_heatmap

    layout = TransferDir(out_dir)
    record = {**result.to_dict(), "boosts": to_json(boosts)}
    if recipe is not None:
        record["recipe"] = dict(recipe)
    json_path = layout.path / layout.JSON
    atomic_write_json(json_path, jsonable(record))
    pairs_csv = layout.path / layout.PAIRS_CSV
    rows = [_pair_csv_row(to_json(p)) for s in result.sources for p in result.row(s.name)]
    write_csv(pairs_csv, rows, list(PAIR_CSV_COLUMNS))
    row_names, col_names = [s.name for s in result.sources], [t.name for t in result.targets]
    csvs, pngs = {}, {}
    metric: PairMetric
    for metric in ("transfer_success", "target_accuracy"):
        matrix = result.matrix(metric)
        csvs[metric] = layout.matrix_csv(metric)
        _write_matrix_csv(csvs[metric], row_names, col_names, matrix)
        pngs[metric] = plot_heatmap(
            matrix, row_names, col_names, layout.heatmap_stem(metric), title=METRIC_TITLES[metric]
        )[0]
    summary = layout.path / layout.SUMMARY
    atomic_write_text(summary, "# Transfer\n\n" + summary_markdown(result, boosts))
    return OutputPaths(
        json=json_path,
        pairs_csv=pairs_csv,
        transfer_success_csv=csvs["transfer_success"],
        target_accuracy_csv=csvs["target_accuracy"],
        transfer_success_png=pngs["transfer_success"],
        target_accuracy_png=pngs["target_accuracy"],
        summary=summary,
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
