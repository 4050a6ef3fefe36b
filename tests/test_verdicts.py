"""The verdict machinery: seed-level tests against scipy, Holm against its definition, the rule's outcomes,
the per-model guard, families, the claim registry, and the README table written from verdicts.json."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.core.stats import adjust_families, holm, judge, one_sample_test, paired_test
from nrflab.experiments.claims import Claim, judge_claim
from nrflab.experiments.evidence import compare_scalars
from nrflab.experiments.guard import check
from nrflab.measure.health import Health
from nrflab.report.document import Section, settle_verdicts, verdict_line, write_report
from nrflab.report.results import BEGIN, END, results_table, update_readme

finite = st.floats(-1, 1, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=3, max_size=10))
def test_paired_test_is_scipys_paired_t_test(pairs):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    d, lo, hi, p, n = paired_test(a, b)
    diffs = [x - y for x, y in pairs]
    assert n == len(pairs) and math.isclose(d, sum(diffs) / n, abs_tol=1e-12)
    sd = float(sps.tstd(diffs))
    if sd < 1e-9:
        return
    ref = sps.ttest_rel(a, b)
    assert math.isclose(p, float(ref.pvalue), rel_tol=1e-6, abs_tol=1e-12)
    half = float(sps.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    assert math.isclose(lo, d - half, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(
        hi, d + half, rel_tol=1e-6, abs_tol=1e-9
    )
    assert (p < 0.05) == (lo > 0 or hi < 0)  # the interval and the test agree


def test_one_sample_test_edge_cases():
    assert one_sample_test([0.2, 0.2, 0.2])[3] == 0.0 and one_sample_test([0, 0, 0])[3] == 1.0
    m, lo, hi, p, n = one_sample_test([0.3, math.nan])
    assert (m, n) == (0.3, 1) and math.isnan(lo) and math.isnan(p)


def test_holm_matches_its_definition():
    # sorted p: .01 .02 .03 .04 -> x4 .04, x3 .06, x2 .06, x1 .06 (monotone), original order restored
    assert holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, math.nan, 0.01]) == pytest.approx([0.5, math.nan, 0.02], nan_ok=True)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0]) and holm([]) == []  # 0.8 x 2 caps at 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_the_order(ps):
    adj = holm(ps)
    assert all(q >= p - 1e-15 and q <= 1 for p, q in zip(ps, adj))
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert all(adj[order[i]] <= adj[order[i + 1]] + 1e-15 for i in range(len(ps) - 1))


def _v(claim: str, low: float, p: float, family: str = "f", n: int = 5):
    return judge(claim, low + 0.1, low, low + 0.2, "e.", n_seeds=n, p=p, family=family)


def test_the_rule_and_holm_within_families():
    assert _v("c", 0.1, 0.01).outcome == "agrees" and _v("c", -0.3, 0.01).outcome == "disagrees"
    assert _v("c", -0.1, 0.3).outcome == "inconclusive"
    assert _v("c", 0.1, 0.01, n=2).outcome == "not tested" and _v("c", 0.1, 0.01, n=2).reason.startswith("2 seeds")
    fails = judge("c", 0.1, 0.0, 0.2, "e.", fails_reason="BN twin collapsed", void_reason=None, n_seeds=5)
    assert fails.outcome == "fails under protocol" and fails.word == "fails under protocol: BN twin collapsed"
    family = [_v("a", 0.1, 0.01), _v("b", 0.1, 0.03), _v("c", 0.1, 0.04, family="g")]
    out = adjust_families(family)
    # family f: .01 x2 = .02 (kept), .03 x1 -> max(.02, .03) = .03 (kept); family g alone: .04 (kept)
    assert [v.outcome for v in out] == ["agrees"] * 3
    assert [v.p_adjusted for v in out] == pytest.approx([0.02, 0.03, 0.04])
    crowded = adjust_families([_v("a", 0.1, 0.02), _v("b", 0.1, 0.03), _v("c", -0.1, 0.5)])
    assert [v.outcome for v in crowded] == ["inconclusive", "inconclusive", "inconclusive"]
    assert "agrees before correction (p 0.02); Holm-adjusted p 0.06 over 3 claims of family 'f'" in crowded[0].reason
    assert adjust_families(crowded) == crowded  # idempotent
    voided = adjust_families([judge("v", 1, 0.5, 1.5, "e.", void_reason="x did not train", p=0.001, family="f")])
    assert voided[0].outcome == "void" and math.isnan(voided[0].p_adjusted)  # no test, not counted


def _h(name, *, acc=0.9, train=0.95, share=0.12, finite=True, view=""):
    return Health(name, 10, train, acc, 3, share, finite, "paper", view)


def test_the_guard_checks_each_model_on_the_claims_view():
    ok = check(learners=[_h("BN"), _h("none", acc=0.85)], comparable=[([_h("BN")], [_h("none", acc=0.85)])])
    assert ok.void is None and ok.fails is None and all(c.passed for c in ok.checks) and len(ok.checks) == 2
    # a model that memorized its training set but guesses on the view: not pooled with its twin
    guess = check(learners=[_h("BN", acc=0.11, view="conflicting set, better of y and y+1"), _h("none")])
    assert guess.void == "BN at chance on conflicting set, better of y and y+1 (11.0 %, chance 10.0 % + 10 points)"
    assert [c.passed for c in guess.checks] == [False, True]
    # the claim's subject trained but fails on the view under the protocol: its own outcome
    fails = check(subjects=[_h("BN", acc=0.1, share=0.98)], learners=[_h("none")])
    assert fails.void is None and fails.fails.startswith(
        "BN collapsed to one class on clean test images, paper protocol"
    )
    assert "though it trained (training accuracy 95.0 %)" in fails.fails
    untrained = check(subjects=[_h("BN", acc=0.1, train=0.12)])
    assert untrained.fails is None and "BN did not train (training accuracy 12.0 %" in untrained.void
    assert "diverged" in check(others=[_h("none", finite=False)]).void
    assert check(others=[_h("none", acc=0.1, train=0.1, share=1.0)]).void is None
    collapsed = check(learners=[_h("BN", share=0.95)])
    assert "collapsed to one class" in collapsed.void


CLAIM = Claim(
    id="test.noninferior",
    experiment="test",
    family="adversarial training",
    text="{with} costs AT little robustness",
    paper="test",
    quantity="rob(BN) - rob(none)",
    unit="points",
    protocol="paper",
    models=("a", "b"),
    guard="both learned",
    margin=0.05,
    margin_source="paper: AT BN ~79 vs AT no BN ~77 %",
)


def test_claims_are_declared_with_a_known_family_unit_and_enough_seeds():
    with pytest.raises(ValueError, match="unknown family"):
        Claim(**{**CLAIM.__dict__, "family": "nope"})
    with pytest.raises(ValueError, match="unknown unit"):
        Claim(**{**CLAIM.__dict__, "unit": "furlongs"})
    with pytest.raises(ValueError, match="at least 3 seeds"):
        Claim(**{**CLAIM.__dict__, "min_seeds": 1})


def test_a_non_inferiority_claim_prints_the_raw_difference_and_judges_it_shifted():
    c = compare_scalars([0.70, 0.69, 0.71, 0.70, 0.72], [0.68, 0.68, 0.69, 0.67, 0.70], seeds=range(5))
    v = judge_claim(CLAIM, c, "Robust accuracy.", guard=check(), seeds=range(5), **{"with": "BN"})
    assert v.claim == "BN costs AT little robustness" and v.family == "adversarial training" and v.unit == "points"
    assert math.isclose(v.difference, c.difference + 0.05) and v.outcome == "agrees" and v.n_seeds == 5
    assert "Raw difference +2 points" in v.evidence and "margin 5 points (paper: AT BN ~79" in v.evidence
    ref = sps.ttest_1samp([d + 0.05 for d in c.per_seed], 0.0)
    assert math.isclose(v.p, float(ref.pvalue), rel_tol=1e-6)


def test_reports_state_the_adjusted_verdicts_and_the_readme_table_is_generated(tmp_path):
    vs = [_v("claim a", 0.1, 0.02), _v("claim b", 0.1, 0.03), _v("claim c", -0.1, 0.5)]
    body = "intro\n" + "\n".join(verdict_line(v) for v in vs)
    settled = settle_verdicts([Section("S", body, [], vs)])
    assert "claim a: this run is **inconclusive** (agrees before correction" in settled[0].markdown
    assert "**agrees**" not in settled[0].markdown
    write_report(tmp_path, "t", [Section("S", body, [], vs)])
    records = json.loads((tmp_path / "verdicts.json").read_text())
    assert [r["verdict"] for r in records] == ["inconclusive"] * 3
    assert set(records[0]) >= {
        "claim",
        "experiment",
        "family",
        "verdict",
        "unit",
        "estimate",
        "interval",
        "n_seeds",
        "p",
        "p_adjusted",
        "guard",
        "protocol",
    }
    assert records[0]["p_adjusted"] == pytest.approx(0.06)
    table = results_table(tmp_path)
    assert "| claim a |" in table and "Verdicts: 3 inconclusive." in table
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\ntail\n")
    assert main(["verdicts", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| claim a |" in text and text.endswith(f"{END}\n\ntail\n")
    readme.write_text("no markers\n")
    with pytest.raises(NrflabError, match="needs one"):
        update_readme(readme, table, source="x")
    assert main(["verdicts", str(tmp_path / "missing")]) == 2


def test_nrflab_claims_lists_the_declared_claims(capsys):
    assert main(["claims"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| claim | family | unit | min seeds |")
    ids = [line.split("|")[1].strip() for line in out.splitlines()[2:]]
    assert {"core.robustness", "features.d_rand_more", "transfer.early_stop", "planted.crossover"} <= set(ids)
    assert len(ids) == len(set(ids))  # each claim declared once
