"""The planted experiment end to end at its quick scale: sections, verdicts, figures and run files.

The quick preset trains three seeds (about 50 s on 2 cores), so the tests that share its run are marked
``slow``: they run in CI (the README's test command), not in the quick suite."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from nrflab.core.errors import NrflabError
from nrflab.experiments.planted.settings import EVAL_FILE, FULL, QUICK, Settings
from nrflab.experiments.reproduce import run_experiment
from nrflab.report.document import Section, verdict_line
from nrflab.runs.jobs import Execution


def _run(out: Path, settings: Settings = QUICK, workers: int = 1) -> list[Section]:
    """The planted experiment alone into ``out/planted``, as ``nrflab experiment planted`` runs it."""
    return run_experiment("planted", out, settings=settings, execution=Execution(workers=workers, progress=False))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("planted")
    return out, _run(out)


@pytest.mark.slow
def test_sections_and_figures(quick_run) -> None:
    out, sections = quick_run
    titles = [s.title for s in sections]
    assert len(titles) == 4
    assert "claims 2-3" in titles[0] and "claim 4" in titles[1] and "claim 5" in titles[2] and "claim 6" in titles[3]
    for s in sections:
        assert "Protocol:" in s.markdown
        assert s.images and all(
            p.is_file() and p.suffix == ".png" and p.with_suffix(".svg").is_file() for p in s.images
        )
    text = sections[0].markdown
    assert "Capability controls" in text and "NRF-norm sweep" in text and "Controls" in text
    assert "The MNIST question" in sections[2].markdown
    assert "The lens finds the planted NRF band" in text


@pytest.mark.slow
def test_verdicts_reach_the_sections(quick_run) -> None:
    """Every planted verdict is a declared claim carried by its section (the report's one verdicts.json).
    The quick preset (three seeds) decides its two D_rand claims: BN learns planted D_rand at a_n = 2, no
    normalization stays near chance; the capability gate fails at this size, so the preference and the
    controls are void, and with no no-norm model learned at the operating point transfer is not tested."""
    out, sections = quick_run
    verdicts = [v for s in sections for v in s.verdicts]
    ids = {v.claim_id for v in verdicts}
    assert {
        "planted.preference",
        "planted.crossover",
        "planted.control.robust",
        "planted.control.availability",
        "planted.control.band",
        "planted.order.first",
        "planted.order.then",
        "planted.drand.without",
        "planted.drand.with",
        "planted.conflicting",
        "planted.mnist",
        "planted.transfer",
    } <= ids
    assert not (out / "verdicts.json").exists()  # no second verdicts file with its own schema
    outcome = {v.claim_id: v.outcome for v in verdicts}
    assert outcome["planted.drand.without"] == "agrees" and outcome["planted.drand.with"] == "agrees"
    drand = {v.claim_id: v for v in verdicts if v.claim_id.startswith("planted.drand")}
    assert drand["planted.drand.with"].low > 0 and drand["planted.drand.without"].low > 0
    assert all(v.n_seeds == 3 for v in drand.values())
    for cid in ("planted.preference", "planted.crossover", "planted.control.robust", "planted.control.band"):
        assert (
            outcome[cid] == "void"
            and "capability control failed" in next(v for v in verdicts if v.claim_id == cid).reason
        )
    assert outcome["planted.transfer"] == "not tested"
    for v in verdicts:
        assert v.family and v.unit and v.protocol and v.experiment == "planted"
        assert v.outcome in ("agrees", "inconclusive") or v.reason, (v.claim_id, v.outcome)  # why not decided
    for section in sections:  # each verdict's line is in its section (the report rewrites it after Holm)
        assert all(verdict_line(v) in section.markdown for v in section.verdicts)
    units = {v.claim_id: v.unit for v in verdicts}
    assert units["planted.preference"] == "rho index" and units["planted.conflicting"] == "rho index"
    assert units["planted.crossover"] == "log ratio" and units["planted.drand.with"] == "points"
    assert next(v for v in verdicts if v.claim_id == "planted.mnist").family == "diagnostics"


@pytest.mark.slow
def test_runs_record_reliance(quick_run) -> None:
    out, _ = quick_run
    op = out / "planted" / "runs" / f"sweep-a{QUICK.a_n:g}-bn-s0"
    with (op / "probes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"epoch", "step", "samples", "f_r", "f_n", "rho"} <= set(rows[0])
    assert float(rows[0]["step"]) == 0 and float(rows[-1]["step"]) > 0
    with (op / "metrics.csv").open() as fh:
        metrics = list(csv.DictReader(fh))
    assert len(metrics) == QUICK.epochs + 1 and "rho" in metrics[0]
    config = json.loads((op / "config.json").read_text())
    assert config["dataset"].startswith("planted:variant=redundant")
    assert config["resolved"]["dataset"]["info"]["params"]["a_n"] == QUICK.a_n
    conflicting = json.loads((out / "planted" / "runs" / "conflicting-none-s1" / EVAL_FILE).read_text())
    assert {"acc_y", "acc_y1", "rho"} <= set(conflicting["value"])


@pytest.mark.slow
def test_rerun_reuses_every_run(quick_run) -> None:
    out, sections = quick_run
    runs = out / "planted" / "runs"
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoint.safetensors")}
    again = _run(out)
    after = {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoint.safetensors")}
    assert before == after and [s.title for s in again] == [s.title for s in sections]


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(NrflabError, match="norms must include it and one more"):
        _run(tmp_path, settings=QUICK.model_copy(update={"norms": ("bn", "gn")}))
    with pytest.raises(NrflabError, match="needs at least two seeds"):
        _run(tmp_path, settings=Settings.model_validate({**QUICK.model_dump(), "seeds": [3]}))


@pytest.mark.slow
def test_workers_give_the_same_numbers(quick_run, tmp_path: Path) -> None:
    """A determinism check: the same measured numbers (not only the same labels) with two workers."""
    out, _ = quick_run
    _run(tmp_path, workers=2)
    for a in sorted((out / "planted" / "runs").glob(f"*/{EVAL_FILE}")):
        b = tmp_path / "planted" / "runs" / a.parent.name / EVAL_FILE
        x, y = json.loads(a.read_text())["value"], json.loads(b.read_text())["value"]
        assert x.keys() == y.keys()
        assert all((math.isnan(x[k]) and math.isnan(y[k])) or x[k] == y[k] for k in x), a.parent.name


def test_full_preset_plan() -> None:
    """The cpu preset: every sweep point has every judged seed (the crossover is paired over >= 5 seeds), the
    judged seeds are not the calibration's (0, 1), and each replicate draws its own images from the same
    templates."""
    from nrflab.experiments.planted.runs import planted_runs

    runs = planted_runs(FULL)
    assert len(runs) == 122 and len(FULL.seeds) >= 5 and not {0, 1} & set(FULL.seeds)
    for a in {*FULL.sweep, FULL.a_n}:
        assert {r.seed for r in runs if r.key == f"sweep-a{a:g}"} == set(FULL.seeds)
    op = [r for r in runs if r.key == f"sweep-a{FULL.a_n:g}" and r.norm == "bn"]
    assert len({r.spec.sample_seed for r in op}) == len(op) and len({r.spec.seed for r in op}) == 1
    pair = [r for r in runs if r.key == "conflicting" and r.seed == op[0].seed]
    assert len({r.spec for r in pair}) == 1  # both normalizations of a seed see the same images
