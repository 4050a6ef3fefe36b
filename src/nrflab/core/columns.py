"""Typed results and the names of the metrics nrflab records.

Metric columns are plain strings in CSV files (``clean_acc``, ``robust_acc[pgd-l2_0.25]``, ``ligs``, ...);
this module is the one place that builds and parses them, and holds the result types that the evaluation
code returns and the writers serialize.
"""

from __future__ import annotations

from collections.abc import Iterable

from nrflab.core.fmt import eps_label

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
    """A reader's name for an attack label: ``pgd-l2_1`` -> ``PGD-L2 eps 1``, ``pgd-linf_0.0313725`` ->
    ``PGD-Linf eps 8/255``, ``fgsm_0.1_t`` -> ``FGSM eps 0.1, targeted``, ``autoattack-l2-apgd-ce+apgd-dlr_1`` ->
    ``AutoAttack L2 (APGD-CE+APGD-DLR) eps 1``; a label of another form is returned
    as it is."""
    kind, _, rest = label.partition("_")
    eps, _, flag = rest.partition("_")
    if not kind or not eps:
        return label
    if kind.startswith("autoattack"):  # autoattack-l2-apgd-ce+apgd-dlr -> AutoAttack L2 (APGD-CE+APGD-DLR)
        _, _, detail = kind.partition("-")
        norm, _, attacks = detail.partition("-")
        name = "AutoAttack" + (f" {norm.upper().replace('LINF', 'Linf')}" if norm else "")
        title = name + (f" ({attacks.upper()})" if attacks else "") + f" eps {eps_label(eps)}"
    else:
        title = f"{kind.upper().replace('LINF', 'Linf')} eps {eps_label(eps)}"
    return title + ", targeted" if flag == "t" else title


def metric_label(key: str) -> str:
    """A metric column as a reader sees it: the same column with the attack's radius written by
    :func:`nrflab.core.fmt.eps_label` (``robust_acc[pgd-linf_0.0313725]`` -> ``robust_acc[pgd-linf_8/255]``);
    every other column unchanged. Files keep the column itself (a stable machine key)."""
    attack = attack_of(key)
    if attack is None:
        return key
    kind, sep, rest = attack.partition("_")
    eps, _, flag = rest.partition("_")
    if not sep or not eps:
        return key
    return robust_key(f"{kind}_{eps_label(eps)}" + (f"_{flag}" if flag else ""))


def robust_keys(columns: Iterable[str]) -> list[str]:
    """The robust-accuracy columns among ``columns``, in order."""
    return [c for c in columns if attack_of(c) is not None]


__all__ = [
    "CLEAN",
    "LIGS",
    "LOGIT_SIM",
    "RELIANCE",
    "RHO",
    "SHIFTED",
    "attack_of",
    "attack_title",
    "metric_label",
    "robust_key",
    "robust_keys",
]
