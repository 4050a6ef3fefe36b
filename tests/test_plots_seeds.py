"""Training-curve figures over seeds: one group per recipe, one colour per normalization, the seed mean
with a min-max band, and panel titles written for readers (no raw column keys)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from nrflab.core.columns import CLEAN, LIGS, robust_key
from nrflab.core.io import atomic_write_json, write_csv
from nrflab.report.plots import BAND, NORM_COLORS, curves_figure, plot_runs
from nrflab.runs.rundir import RunDir

ROB = robust_key("pgd-l2_1")
COLUMNS = ["epoch", CLEAN, ROB, LIGS]
NORMS = ("bn", "none")
SEEDS = (0, 1, 2)


def value(norm: str, seed: int, epoch: int, column: str) -> float:
    """A distinct value per (norm, seed, epoch, column), exact in the 6 significant digits of metrics.csv."""
    base = {"bn": 0.5, "none": 0.25}[norm] + 0.05 * seed + 0.02 * epoch
    return base / 2 if column == ROB else base / 4 if column == LIGS else base


def write_run(path: Path, *, norm: str, seed: int, epochs: int = 4, **config: object) -> Path:
    """A minimal run directory: config.json and metrics.csv with ``epochs`` rows (epoch 0 .. epochs - 1)."""
    run = RunDir(path)
    run.path.mkdir(parents=True)
    atomic_write_json(
        run.config_path, {"arch": "smallcnn", "norm": norm, "seed": seed, "adv_train": "none", "width": 1.0, **config}
    )
    rows = [{"epoch": e, **{c: value(norm, seed, e, c) for c in COLUMNS[1:]}} for e in range(epochs)]
    write_csv(run.metrics_path, rows, COLUMNS)
    return run.path


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    """2 norms x 3 seeds; seed 2 of the no-norm model is still training (2 epoch rows of 4)."""
    return [
        write_run(tmp_path / f"{n}-s{s}", norm=n, seed=s, epochs=2 if (n, s) == ("none", 2) else 4)
        for n in NORMS
        for s in SEEDS
    ]


def mean_lines(ax):
    return [line for line in ax.lines if line.get_gid() == "mean"]


def test_one_mean_line_per_group_with_legend_saying_seeds_and_band(runs):
    fig = curves_figure(runs)
    assert len(fig.axes) == 3  # clean, robust, LIGS
    for ax in fig.axes:
        assert len(mean_lines(ax)) == len(NORMS)
        assert len(ax.lines) == len(NORMS) * (len(SEEDS) + 1)  # seeds + the mean, per group
        assert len(ax.collections) == len(NORMS)  # one band per group
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"smallcnn/{n} (3 seeds, mean; band: {BAND})" for n in NORMS]


def test_each_group_has_one_colour_and_norms_differ(runs):
    fig = curves_figure(runs)
    for ax in fig.axes:
        per_group = len(SEEDS) + 1
        for i, norm in enumerate(NORMS):
            lines = ax.lines[i * per_group : (i + 1) * per_group]
            assert {to_hex(line.get_color()) for line in lines} == {NORM_COLORS[norm]}
            assert lines[-1].get_gid() == "mean" and lines[-1].get_linewidth() > lines[0].get_linewidth()
        assert len({to_hex(line.get_color()) for line in mean_lines(ax)}) == len(NORMS)


def test_mean_line_is_the_per_epoch_seed_mean_over_the_seeds_present(runs):
    fig = curves_figure(runs)
    for ax, column in zip(fig.axes, (CLEAN, ROB, LIGS)):
        scale = 1.0 if column == LIGS else 100.0
        for line, norm in zip(mean_lines(ax), NORMS):
            have = {s: 2 if (norm, s) == ("none", 2) else 4 for s in SEEDS}
            expect = [
                scale * sum(value(norm, s, e, column) for s in SEEDS if e < have[s]) / sum(e < have[s] for s in SEEDS)
                for e in range(4)
            ]
            assert list(line.get_xdata()) == [0, 1, 2, 3]
            assert list(line.get_ydata()) == pytest.approx(expect, rel=1e-9)
            assert all(math.isfinite(y) for y in line.get_ydata())


def test_panel_titles_and_axis_labels_are_for_readers(runs):
    fig = curves_figure(runs, title="Figure 3")
    titles = [ax.get_title() for ax in fig.axes]
    assert not any("pgd-l2_" in t or "robust_acc[" in t for t in titles)
    assert "PGD-L2 eps 1" in titles[1]
    assert [ax.get_ylabel() for ax in fig.axes] == ["clean accuracy (%)", "robust accuracy (%)", "LIGS"]


def test_a_single_run_is_one_plain_line_labelled_as_before(tmp_path):
    run = write_run(tmp_path / "bn", norm="bn", seed=0)
    fig = curves_figure([run])
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and not ax.collections
    assert ax.lines[0].get_label() == "smallcnn/bn"
    assert list(ax.lines[0].get_ydata()) == pytest.approx([100 * value("bn", 0, e, CLEAN) for e in range(4)])


def test_groups_of_one_norm_share_the_colour_and_differ_in_style(tmp_path):
    std = [write_run(tmp_path / f"std{s}", norm="bn", seed=s) for s in (0, 1)]
    adv = [write_run(tmp_path / f"adv{s}", norm="bn", seed=s, adv_train="pgd-l2") for s in (0, 1)]
    wide = write_run(tmp_path / "wide", norm="bn", seed=0, width=2.0)
    fig = curves_figure([*std, *adv, wide])
    lines = mean_lines(fig.axes[0])
    assert [line.get_label() for line in lines] == [
        "smallcnn/bn (width=1.0) (2 seeds, mean; band: min-max)",
        "smallcnn/bn AT(pgd-l2) (2 seeds, mean; band: min-max)",
        "smallcnn/bn (width=2.0)",
    ]
    assert {to_hex(line.get_color()) for line in lines} == {NORM_COLORS["bn"]}
    assert len({line.get_linestyle() for line in lines}) == 3


def test_labels_given_per_run_still_name_and_split_the_runs(runs):
    fig = curves_figure(runs, labels=[f"{n} seed {s}" for n in NORMS for s in SEEDS])
    assert len(mean_lines(fig.axes[0])) == len(runs)
    fig = curves_figure(runs, labels=[n.upper() for n in NORMS for _ in SEEDS])
    assert [line.get_label() for line in mean_lines(fig.axes[0])] == [
        f"{n.upper()} (3 seeds, mean; band: {BAND})" for n in NORMS
    ]


def test_plot_runs_keeps_its_signature_and_writes_png_and_svg(runs, tmp_path):
    paths = plot_runs(runs, tmp_path / "figs" / "fig3", "pgd-l2", "title")
    assert [p.name for p in paths] == ["fig3.png", "fig3.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PGD-L2 eps 1" in paths[1].read_text()
