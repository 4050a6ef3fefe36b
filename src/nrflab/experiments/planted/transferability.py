"""Transfer with ground truth (claim 6): PGD-L2 examples of each operating-point model on the models of the
other seeds, and where each perturbation's energy lies (RF band, NRF band, rest).

Transfer success is :mod:`nrflab.measure.transfer_rate`'s: among examples the source classifies correctly
and the attack fools, that the target classifies correctly when clean, the share that fool the target (a
pair with no eligible example has no rate and is left out of the means)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nrflab.core.stats import finite_mean
from nrflab.data.planted import PlantedSpec, band_mask, make_templates
from nrflab.experiments.planted.measurement import Measured, full_views, pgd_l2
from nrflab.experiments.planted.settings import Settings
from nrflab.measure.predict import predict
from nrflab.measure.spectrum import BandEnergy, band_energy
from nrflab.measure.transfer_rate import transfer_rate
from nrflab.models.checkpoint import load_model


@dataclass(frozen=True)
class TransferResult:
    """Success rates (source norm -> target norm, over seed pairs) and band energies per source norm."""

    success: dict[tuple[str, str], float]
    white_box: dict[str, float]
    per_seed: dict[str, list[float]]  # source norm -> per-seed mean success on the other seeds' models
    energy: dict[str, dict[str, float]]
    seeds: list[int]
    #: source norm -> source seed -> target ("norm seed") -> success: the crossed cells of the claim's interval
    cells: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)


def transfer(m: Measured, s: Settings, op_key: str, spec: PlantedSpec) -> TransferResult:
    views = full_views(spec)
    x, y = views.agree_x[: s.transfer_size], views.agree_y[: s.transfer_size]
    seeds = m.learned_seeds(op_key, s.norms, s.learned_min)
    models = {(n, sd): load_model(m.dirs[(op_key, n, sd)]) for n in s.norms for sd in seeds}
    clean = {k: predict(mod, x, batch_size=250) for k, mod in models.items()}
    rf_mask, nrf_mask = band_mask(spec.rf_band, spec.size), band_mask(spec.nrf_band, spec.size)
    nrf_t = make_templates(spec).nrf
    rates: dict[tuple[str, str], list[float]] = {}
    per_seed: dict[str, list[float]] = {n: [] for n in s.norms}
    white: dict[str, list[float]] = {n: [] for n in s.norms}
    energy: dict[str, list[BandEnergy]] = {n: [] for n in s.norms}
    cells: dict[str, dict[int, dict[str, float]]] = {n: {} for n in s.norms}
    if len(seeds) < 2:
        nan = {f: math.nan for f in ("rf_band", "nrf_band", "rest", "nrf_templates", "norm")}
        return TransferResult(
            {}, {n: math.nan for n in s.norms}, {n: [] for n in s.norms}, {n: dict(nan) for n in s.norms}, seeds
        )
    for (src_norm, src_seed), src in models.items():
        x_adv = pgd_l2(src, eps=s.transfer_eps, steps=s.pgd_steps)(x, y)
        src_adv = predict(src, x_adv, batch_size=250)
        white[src_norm].append(float((src_adv != y).float().mean()))
        energy[src_norm].append(band_energy(x_adv - x, rf_mask=rf_mask, nrf_mask=nrf_mask, nrf_templates=nrf_t))
        mine = []
        for (tn, tsd), tgt in models.items():
            if tsd == src_seed:
                continue
            rate = transfer_rate(
                source_clean=clean[(src_norm, src_seed)],
                source_adv=src_adv,
                target_clean=clean[(tn, tsd)],
                target_adv=predict(tgt, x_adv, batch_size=250),
                labels=y,
            ).rate
            rates.setdefault((src_norm, tn), []).append(rate)
            cells[src_norm].setdefault(src_seed, {})[f"{tn} {tsd}"] = rate
            mine.append(rate)
        per_seed[src_norm].append(finite_mean(mine))
    energy_mean = {
        n: {
            f: finite_mean([getattr(e, f) for e in energy[n]])
            for f in ("rf_band", "nrf_band", "rest", "nrf_templates", "norm")
        }
        for n in s.norms
    }
    return TransferResult(
        {k: finite_mean(v) for k, v in rates.items()},
        {n: finite_mean(v) for n, v in white.items()},
        per_seed,
        energy_mean,
        seeds,
        cells,
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
