"""The files ``nrflab evaluate`` writes, for a Python user as for the command (:func:`write_evaluation`): the
record as JSON and, beside it with the same name, a CSV a reader opens in a spreadsheet (one row per metric, an
accuracy with its Wilson 95 % interval over the images); an interrupted AutoAttack resumes from
``autoattack-state/`` beside them.
"""

from __future__ import annotations

from pathlib import Path

from nrflab.core.columns import attack_of, metric_label
from nrflab.core.io import atomic_write_json, write_csv
from nrflab.core.stats import wilson
from nrflab.measure.evaluation import EvaluateSettings, EvaluationRecord, Subject, evaluate_subject

#: The columns of the CSV beside the JSON: one row per metric; accuracies with a Wilson 95 % interval.
CSV_COLUMNS = ("metric", "label", "attack", "value", "ci_low", "ci_high", "num_images")
#: Where an interrupted AutoAttack resumes from, beside the output file.
STATE_DIR = "autoattack-state"


def csv_rows(record: EvaluationRecord) -> list[dict[str, object]]:
    """One row per metric: its key, reader's label, attack spec (robust accuracies), value and, for an
    accuracy (a fraction of the images), the Wilson 95 % interval over the images."""
    n, rows = record.num_samples, list[dict[str, object]]()
    for key, value in record.metrics.items():
        attack = attack_of(key)
        fraction = key.endswith("acc") or attack is not None
        lo, hi = wilson(round(value * n), n) if fraction else (None, None)
        ensemble = attack is not None and attack.startswith("ensemble ")  # e.g. "ensemble l2 eps=1"
        spec = record.attacks.get(attack, "every attack of its threat" if ensemble else "") if attack else ""
        row = {"metric": key, "label": metric_label(key), "attack": spec}
        rows.append({**row, "value": value, "ci_low": lo, "ci_high": hi, "num_images": n})
    return rows


def write_evaluation(
    subject: Subject, s: EvaluateSettings, *, target: Path, progress: bool = False
) -> tuple[EvaluationRecord, tuple[Path, Path]]:
    """Measure an opened subject (:func:`~nrflab.measure.evaluation.open_evaluation`) and write its record to
    ``target`` (JSON) and the same name ``.csv`` beside it; AutoAttack keeps its resume state in
    ``autoattack-state/`` beside them. Returns the record and the two paths written."""
    record = evaluate_subject(subject, s, progress=progress, state_dir=target.parent / STATE_DIR)
    csv = target.with_suffix(".csv")
    atomic_write_json(target, record.to_json())
    write_csv(csv, csv_rows(record), list(CSV_COLUMNS))
    return record, (target, csv)


__all__ = ["write_evaluation"]
