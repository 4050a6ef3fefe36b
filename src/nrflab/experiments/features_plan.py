"""The plan of the feature-dataset experiment (:mod:`nrflab.experiments.features`): the two source models,
the feature datasets built from them, the twins trained on every set and the final measurements of each
twin under every evaluation protocol.
"""

from __future__ import annotations

from pathlib import Path

from nrflab.core.fmt import eps as fmt_eps
from nrflab.data.defaults import autoattack
from nrflab.experiments.engine import BuildTask, Task, TrainTask
from nrflab.experiments.evidence import claim_threat, measure_task, on_test_images
from nrflab.experiments.features_settings import SETS, FeaturesSettings
from nrflab.experiments.spec import Stage


def _source_tasks(s: FeaturesSettings, home: Path) -> dict[str, TrainTask]:
    return {
        name: TrainTask(
            str(home / "sources" / name), s.train_config(stage, norm=s.source_norm, seed=s.source_seed).model_dump()
        )
        for name, stage in (("standard", s.source), ("robust", s.robust_source))
    }


def needed_sets(s: FeaturesSettings) -> list[str]:
    """The sets to build, in build order: the preset's sets and D_R when the conflicting set needs it."""
    needed = list(s.sets)
    if "conflicting" in needed and "d_r" not in needed:
        needed.insert(0, "d_r")  # the conflicting set is built on D_R
    return [k for k in SETS if k in needed]


def _build_tasks(s: FeaturesSettings, home: Path, sources: dict[str, TrainTask]) -> dict[str, BuildTask]:
    b = s.build
    sets = home / "sets"
    common = dict(seed=b.seed, limit=b.limit)
    nrf = dict(steps=b.nrf_steps, eps=b.nrf_eps, step_size=b.nrf_step_size, **common)
    inv = dict(
        steps=b.inv_steps,
        eps=b.inv_eps,
        step_size=b.inv_step_size,
        fake_relu=b.fake_relu,
        label_policy=b.inv_label_policy,
        **common,
    )
    out: dict[str, BuildTask] = {}
    for kind in needed_sets(s):
        source = sources["robust" if kind == "d_r" else "standard"].key
        base = str(sets / "d_r") if kind == "conflicting" else None  # the conflicting set is built on D_R
        out[kind] = BuildTask(
            str(sets / kind),
            kind,
            source,
            s.dataset,
            inv if kind == "d_r" else nrf,
            data_root=s.data_root,
            base=base,
            device=s.device,
            after=(source,) if base is None else (source, base),
        )
    return out


def twin_stage(s: FeaturesSettings, kind: str) -> Stage:
    per_set: dict[str, Stage] = {str(k): v for k, v in s.per_set.items()}
    return s.twins.merged(per_set.get(kind))


def twin_tasks(s: FeaturesSettings, home: Path) -> dict[tuple[str, str, int], TrainTask]:
    """The twins' training runs by (set, norm, seed)."""
    out: dict[tuple[str, str, int], TrainTask] = {}
    for kind in s.sets:
        data = str(home / "sets" / kind)
        for norm in s.norms:
            for seed in s.seeds:
                cfg = s.train_config(
                    twin_stage(s, kind), norm=norm, seed=seed, dataset=data, eval_shifted_labels=kind == "conflicting"
                )
                out[(kind, norm, seed)] = TrainTask(
                    str(home / "runs" / f"{kind}_{norm}_s{seed}"), cfg.model_dump(), after=(data,)
                )
    return out


def final_attack(s: FeaturesSettings, task: TrainTask) -> list[str]:
    """The attacks of a twin's final evaluation: the first of its recipe's per-epoch attacks and, at its
    threat model, AutoAttack (``final_autoattack``); the robust column is their per-image worst case."""
    first = [str(a) for a in list(task.config.get("eval_attacks") or [])[:1]]
    threat = claim_threat(first)
    if threat is None or s.final_autoattack is None:
        return first
    which = None if s.final_autoattack == "standard" else s.final_autoattack
    return [*first, autoattack(norm=threat.norm, eps=fmt_eps(threat.eps), attacks=which)]


def plan(s: FeaturesSettings, home: Path) -> list[Task]:
    sources = _source_tasks(s, home)
    builds = _build_tasks(s, home, sources)
    needed = {b.source for b in builds.values()}
    twins = twin_tasks(s, home)
    measures = []
    for (_, _, seed), t in twins.items():
        attacks = final_attack(s, t)
        for name in s.protocols:
            measures.append(
                measure_task(
                    t.key,
                    **on_test_images(s),
                    protocol=name,
                    attacks=attacks,
                    ligs_sigma=s.ligs_sigma,
                    seed=seed,
                    device=s.device,
                    autoattack_size=s.autoattack_size,
                )
            )
    return [*(t for t in sources.values() if t.key in needed), *builds.values(), *twins.values(), *measures]
