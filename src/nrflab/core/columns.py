"""Typed results and the names of the metrics nrflab records.

Metric columns are plain strings in CSV files (``clean_acc``, ``robust_acc[pgd-l2_0.25]``, ``ligs``, ...);
this module is the one place that builds and parses them, and holds the result types that the evaluation
code returns and the writers serialize.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import field

from nrflab.core.records import record

CLEAN = "clean_acc"
SHIFTED = "shifted_acc"
LIGS = "ligs"
LOGIT_SIM = "logit_sim"
_ROBUST_PREFIX = "robust_acc["
RHO = "rho"
RELIANCE = ("agree_acc", "rf_suff_acc", "nrf_suff_acc", "f_r", "f_n", RHO)
"""The reliance probe's columns (on planted data): accuracy on the agree, RF-sufficiency and NRF-sufficiency
views, the swap fractions F_R and F_N, and rho = F_N - F_R (+1: the model follows the NRF)."""


def robust_key(attack_label: str) -> str:
    """The column of robust accuracy under an attack: ``robust_acc[<label>]``."""
    return f"{_ROBUST_PREFIX}{attack_label}]"


def attack_of(key: str) -> str | None:
    """The attack label of a robust-accuracy column, or None for any other column."""
    if key.startswith(_ROBUST_PREFIX) and key.endswith("]"):
        return key[len(_ROBUST_PREFIX) : -1]
    return None


def attack_title(label: str) -> str:
    """A reader's name for an attack label: ``pgd-l2_1`` -> ``PGD-L2 eps 1``, ``fgsm_0.1_t`` -> ``FGSM eps 0.1,
    targeted``; a label of another form is returned as it is."""
    kind, _, rest = label.partition("_")
    eps, _, flag = rest.partition("_")
    if not kind or not eps:
        return label
    title = f"{kind.upper().replace('LINF', 'Linf')} eps {eps}"
    return title + ", targeted" if flag == "t" else title


def robust_keys(columns: Iterable[str]) -> list[str]:
    """The robust-accuracy columns among ``columns``, in order."""
    return [c for c in columns if attack_of(c) is not None]


@record
class EvalResult:
    """The framework's row for one model on one set of images.

    usefulness = ``clean_acc``; robust usefulness = ``robust_acc[attack]``; robustness of the used
    features = ``ligs`` (None when not measured).
    """

    clean_acc: float
    robust_acc: Mapping[str, float] = field(default_factory=dict)
    ligs: float | None = None
    logit_sim: float | None = None
    num_samples: int = 0

    def row(self) -> dict[str, float]:
        """Flat metric columns, as in metrics.csv."""
        out = {CLEAN: self.clean_acc}
        out.update({robust_key(k): v for k, v in self.robust_acc.items()})
        if self.ligs is not None:
            out[LIGS] = self.ligs
        if self.logit_sim is not None:
            out[LOGIT_SIM] = self.logit_sim
        return out

    @classmethod
    def from_row(cls, row: Mapping[str, float], num_samples: int = 0) -> EvalResult:
        """Read back a metrics row (NaN LIGS counts as not measured)."""
        ligs = row.get(LIGS)
        sim = row.get(LOGIT_SIM)
        return cls(
            clean_acc=float(row[CLEAN]),
            robust_acc={a: float(row[k]) for k in row if (a := attack_of(k)) is not None},
            ligs=None if ligs is None or math.isnan(ligs) else float(ligs),
            logit_sim=None if sim is None or math.isnan(sim) else float(sim),
            num_samples=num_samples,
        )


__all__ = [
    "CLEAN",
    "EvalResult",
    "LIGS",
    "LOGIT_SIM",
    "RELIANCE",
    "RHO",
    "SHIFTED",
    "attack_of",
    "attack_title",
    "robust_key",
    "robust_keys",
]
