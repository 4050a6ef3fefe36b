"""Transfer heat maps sized for their labels: no tick label overlaps another at 8 x 8 models with long names,
the figure grows with the models and the label length, and an all-n/a matrix shows a note (and says so in the
summary) instead of empty axes."""

from __future__ import annotations

import math
from itertools import combinations

from matplotlib.backends.backend_agg import FigureCanvasAgg

from nrflab.report.plots import NO_VALUES, heatmap_figure, heatmap_size, plot_heatmap
from nrflab.transfer.outputs import _no_values_note

LONG = [f"resnet18_bn_w0.25_lr0.1_seed{i}@e12-checkpoint" for i in range(8)]


def _overlaps(boxes) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in combinations(enumerate(boxes), 2) if a.overlaps(b)]


def test_eight_by_eight_long_labels_do_not_overlap():
    matrix = [[(i * 8 + j) / 64 for j in range(8)] for i in range(8)]
    fig = heatmap_figure(matrix, LONG, LONG, title="transfer success %")
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    xs = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    ys = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    assert len(xs) == 8 and len(ys) == 8
    assert _overlaps(xs) == [] and _overlaps(ys) == []
    inside = fig.bbox  # every label on the canvas, none cut off
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 + 1 and inside.y0 <= b.y0 + 1 for b in [*xs, *ys])
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [90.0] * 8
    assert len(ax.texts) == 64  # a value in every cell


def test_figure_grows_with_models_and_label_length():
    short2, short8 = heatmap_size(["a", "b"], ["a", "b"]), heatmap_size(list("abcdefgh"), list("abcdefgh"))
    long8 = heatmap_size(LONG, LONG)
    assert short8[0] > short2[0] and short8[1] > short2[1]
    assert long8[0] > short8[0] and long8[1] > short8[1]
    assert math.isclose(long8[0] - short8[0], (len(LONG[0]) - 1) * 8 * 0.62 / 72, rel_tol=1e-9)


def test_an_all_na_matrix_draws_a_note_not_empty_axes(tmp_path):
    nan = float("nan")
    fig = heatmap_figure([[nan, nan], [nan, nan]], ["a", "b"], ["c", "d"])
    assert [t.get_text() for t in fig.axes[0].texts] == [NO_VALUES]
    assert len(fig.axes) == 1  # no colour bar for no colours
    paths = plot_heatmap([[nan]], ["a"], ["b"], tmp_path / "map")
    assert [p.name for p in paths] == ["map.png", "map.svg"] and all(p.stat().st_size > 0 for p in paths)


class _AllNa:
    def matrix(self, metric):
        return [[float("nan")]] if metric == "transfer_success" else [[0.5]]


def test_the_summary_says_which_map_has_no_values():
    (line, blank) = _no_values_note(_AllNa())
    assert line.startswith("Every pair's transfer success % (eligible examples) is n/a") and blank == ""
    assert '"no values"' in line
