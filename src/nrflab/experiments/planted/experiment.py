"""The planted experiment as one call: train every run, measure, judge, and return the report sections."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from nrflab.core.errors import NrflabError
from nrflab.experiments.planted.jobs import train_all
from nrflab.experiments.planted.runs import plan, torch_threads
from nrflab.experiments.planted.sections import build_sections
from nrflab.experiments.planted.settings import FULL, QUICK, Settings
from nrflab.experiments.planted.transferability import transfer
from nrflab.models.checkpoint import atomic_write_json
from nrflab.report.document import Section


def run(
    out_dir: Path,
    *,
    quick: bool = False,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    progress: bool = True,
    settings: Settings | None = None,
) -> list[Section]:
    """Train every planted run under ``out_dir``, measure reliance, and return the report sections."""
    s = settings or (QUICK if quick else FULL)
    if "none" not in s.norms or len(s.norms) < 2:
        raise NrflabError(
            "the planted experiment compares normalizations with 'none': norms must include it and one more"
        )
    seeds = list(dict.fromkeys(seeds))
    if quick:
        seeds = seeds[:2]
    if len(seeds) < 2:
        raise NrflabError("the planted experiment needs at least two seeds (paired intervals)")
    out = Path(out_dir)
    started = time.perf_counter()
    runs = plan(s, seeds)
    m, mnist = train_all(runs, s, out, seeds, progress=progress, started=started)
    op_key = f"sweep-a{s.a_n:g}"
    op_spec = next(r.spec for r in runs if r.key == op_key)
    with torch_threads(1):
        tr = transfer(m, s, op_key, op_spec)
    seconds = time.perf_counter() - started
    sections, verdicts = build_sections(out, s, seeds, m, op_key, op_spec, mnist, tr, seconds)
    atomic_write_json(
        out / "verdicts.json",
        {"settings": asdict(s), "seeds": seeds, "seconds": seconds, "verdicts": [v.to_dict() for v in verdicts]},
    )
    return sections


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package
