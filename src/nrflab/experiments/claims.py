"""Every claim nrflab judges, declared once: what the paper says, what is measured, in which unit, in which
family, under which protocol, between which models, behind which guard, from how many seeds.

A claim is registered at import time by the experiment that judges it (``CLAIM = register_claim(...)``,
or through the module's :func:`claims_of` binding of what its claims share) and judged with :func:`judge_claim`, which fills the verdict's id, experiment, family, unit and guard from
the declaration, so a report or ``verdicts.json`` never has to guess them. ``nrflab`` lists them with
:func:`list_claims`. Families group the claims that answer one question of the paper; Holm's procedure
holds the family-wise error rate within each (:func:`nrflab.core.stats.adjust_families`).

A compound claim ("with BN it learns, without it hardly") is declared as two claims, each judged. A
non-inferiority claim declares its ``margin`` and where the margin comes from; its verdict prints the raw
difference beside the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from nrflab.core.registry import Registry
from nrflab.core.stats import MIN_SEEDS, Verdict
from nrflab.experiments.evidence import Comparison
from nrflab.experiments.guard import Guard, verdict

#: The families of claims (one question of the paper each); Holm runs within each.
FAMILIES = {
    "claim 1: clean accuracy": "BN raises clean accuracy",
    "claim 1: robustness": "BN lowers adversarial robustness",
    "claims 2-3: LIGS": "BN lowers the robustness of the features used (LIGS)",
    "claim 4: learning order": "robust features first, then non-robust; further with BN",
    "claim 5: feature datasets": "learning from D_rand and the conflicting set, with and without BN",
    "claim 6: transferability": "adversarial examples of no-BN and early-stopped sources transfer better",
    "claim 7: other normalizations": "GroupNorm, LayerNorm, InstanceNorm also raise vulnerability",
    "claim 7: corruptions": "BN lowers corruption robustness",
    "adversarial training": "adversarial training moves models to robust features, with or without BN",
    "planted: reliance": "planted features with known reliance: BN prefers the small high-frequency feature",
    "planted: controls": "controls of the planted reliance (what the gap depends on)",
    "frequency: high-frequency sensitivity": "BN shifts sensitivity toward high frequencies (Fourier heat maps)",
    "diagnostics": "checks of the method that are not claims of the paper",
}

#: Units a judged quantity may carry (a verdict prints its estimate in its unit).
UNITS = ("points", "LIGS", "rho index", "ratio", "log ratio", "epochs", "share")


@dataclass(frozen=True)
class Claim:
    """One declared claim.

    ``text`` is the label reports print; it may contain ``{with}`` and ``{without}`` (the normalization
    under test and its baseline, e.g. "BN" and "no normalization"). ``quantity`` says what the estimate is
    (oriented so that a positive value supports the claim), ``unit`` its unit, ``paper`` the paper's
    wording and claim number (``../shared/paper-notes.md``). ``margin`` (in the unit, as a fraction for
    points) makes it a non-inferiority claim; ``margin_source`` says where the margin comes from.
    """

    id: str
    experiment: str
    family: str
    text: str
    paper: str
    quantity: str
    unit: str
    protocol: str
    models: tuple[str, ...]
    guard: str
    min_seeds: int = MIN_SEEDS
    margin: float | None = None
    margin_source: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"claim {self.id}: unknown family {self.family!r}")
        if self.unit not in UNITS:
            raise ValueError(f"claim {self.id}: unknown unit {self.unit!r}")
        if self.min_seeds < MIN_SEEDS:
            raise ValueError(f"claim {self.id}: a claim about models needs at least {MIN_SEEDS} seeds")

    def label(self, **names: str) -> str:
        """The printed label with ``{with}``/``{without}`` filled in."""
        return self.text.format(**names) if names else self.text


CLAIMS: Registry[Claim] = Registry("claim")


def register_claim(**fields: object) -> Claim:
    """Declare a claim (keyword arguments: the fields of :class:`Claim`) and return it."""
    claim = Claim(**fields)  # type: ignore[arg-type]
    return CLAIMS.add(claim.id, claim)


def claims_of(experiment: str, **shared: object) -> Callable[..., Claim]:
    """:func:`register_claim` for one experiment's module, with ``experiment`` and the ``shared`` fields its
    claims have in common bound once (``family``, ``models``, ``guard``, ...); a declaration may still set
    any of them, so each says only what is particular to it."""
    return partial(register_claim, experiment=experiment, **shared)


def list_claims(pattern: str | None = None) -> list[Claim]:
    """Every claim of every installed experiment, optionally filtered by a shell pattern on the id ("core.*").
    The experiments are imported first (each declares its claims when imported)."""
    from nrflab.experiments.registry import discover

    discover()
    return [CLAIMS.get(n) for n in CLAIMS.names(pattern)]


def judge_claim(
    claim: Claim,
    comparison: Comparison,
    evidence: str,
    *,
    guard: Guard,
    seeds: Sequence[int],
    protocol: str | None = None,
    **names: str,
) -> Verdict:
    """The verdict of ``claim`` from its claim-oriented ``comparison`` and its ``guard``: the one rule of
    :func:`nrflab.core.stats.judge` with the declaration's id, family, unit and minimum seeds.

    For a non-inferiority claim, ``comparison`` is the raw difference (the subject minus the reference);
    the verdict judges the difference plus the margin and its evidence prints both.
    """
    judged = comparison
    if claim.margin is not None:
        judged = comparison.shifted(claim.margin)
        scale = 100.0 if claim.unit == "points" else 1.0
        evidence += (
            f" Raw difference {_num(scale * comparison.difference)} {claim.unit} "
            f"[{_num(scale * comparison.low)}, {_num(scale * comparison.high)}]; non-inferiority margin "
            f"{_num(scale * claim.margin, sign=False)} {claim.unit} ({claim.margin_source}); judged: raw difference "
            "+ margin."
        )
    return verdict(
        claim.label(**names),
        judged,
        evidence,
        protocol=protocol or claim.protocol,
        seeds=seeds,
        void=guard,
        unit=claim.unit,
        claim_id=claim.id,
        experiment=claim.experiment,
        family=claim.family,
        min_seeds=claim.min_seeds,
    )


def with_family(v: Verdict, claim: Claim) -> Verdict:
    """``v`` (judged by older code) carrying ``claim``'s id, experiment, family and unit."""
    return replace(v, claim_id=claim.id, experiment=claim.experiment, family=claim.family, unit=claim.unit)


def _num(value: float, *, sign: bool = True) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.3g}" if sign else f"{value:.3g}"


__all__ = ["list_claims"]
