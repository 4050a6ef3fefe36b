"""What ``nrflab evaluate`` writes beside its JSON record: a CSV a reader opens in a spreadsheet (one row per
metric, an accuracy with its Wilson 95 % interval over the images), and where AutoAttack's resume state goes."""

from __future__ import annotations

from nrflab.core.columns import attack_of, metric_label
from nrflab.core.stats import wilson
from nrflab.measure.evaluation import EvaluationRecord

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


__all__ = ["CSV_COLUMNS", "STATE_DIR", "csv_rows"]
