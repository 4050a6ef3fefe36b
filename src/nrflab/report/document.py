"""Reports: Markdown and self-contained HTML (plots embedded) built from sections of experiments."""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nrflab.core.fmt import markdown_table, p_value
from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.core.stats import ALPHA, MIN_SEEDS, Verdict, adjust_families


@dataclass
class Section:
    """One part of a report: a title, a Markdown body, images (paths) shown under it, and the verdicts
    the body states (collected into the report's summary table and ``verdicts.json``)."""

    title: str
    markdown: str
    images: list[Path] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


def verdict_line(verdict: Verdict) -> str:
    """One sentence per judged claim (see ``nrflab.core.stats.judge``): outcome, evidence, seeds, p-values
    and protocol."""
    word = {
        "agrees": "**agrees**",
        "disagrees": "**disagrees**",
        "inconclusive": "is **inconclusive**" + (f" ({verdict.reason})" if verdict.reason else ""),
        "void": f"is **void** ({verdict.reason})",
        "not tested": f"is **not tested** ({verdict.reason})",
        "fails under protocol": f"**fails under its protocol** ({verdict.reason})",
    }[verdict.outcome]
    stats = _p_text(verdict)
    protocol = f" Protocol: {verdict.protocol}." if verdict.protocol else ""
    method = f" Interval: {verdict.method}." if verdict.method else ""
    return f"- {verdict.claim}: this run {word}. {verdict.evidence}{stats}{method}{protocol}"


def _p_text(v: Verdict) -> str:
    if not math.isfinite(v.p):
        return ""
    adjusted = f", Holm-adjusted {p_value(v.p_adjusted)} (family '{v.family}')" if math.isfinite(v.p_adjusted) else ""
    return f" p {p_value(v.p)}{adjusted}."


def settle_verdicts(sections: Sequence[Section]) -> list[Section]:
    """The sections with their verdicts Holm-adjusted within each family over every verdict of the report
    (:func:`nrflab.core.stats.adjust_families`), and each verdict's line in the section text rewritten to
    the adjusted verdict. Idempotent: settling settled sections changes nothing."""
    flat = [v for s in sections for v in s.verdicts]
    settled = iter(adjust_families(flat))
    out = []
    for s in sections:
        new = [next(settled) for _ in s.verdicts]
        markdown = s.markdown
        for old, v in zip(s.verdicts, new, strict=True):
            markdown = markdown.replace(verdict_line(old), verdict_line(v))
        out.append(Section(s.title, markdown, list(s.images), new))
    return out


def verdict_table(sections: Sequence[Section]) -> str:
    """Every typed verdict of the sections in one table: experiment, claim, outcome, estimate with its
    interval and unit, seeds, raw and Holm-adjusted p, family."""
    rows = []
    for s in sections:
        for v in s.verdicts:
            rows.append(
                [
                    v.experiment or s.title,
                    v.claim + _protocol_note(v),
                    _outcome_cell(v),
                    _difference_cell(v),
                    str(v.n_seeds) if v.n_seeds else "",
                    p_value(v.p),
                    p_value(v.p_adjusted),
                    v.family,
                ]
            )
    header = ["experiment", "claim", "verdict", "estimate [95 % CI]", "seeds", "p", "p (Holm)", "family"]
    return markdown_table(header, rows) if rows else ""


def _protocol_note(v: Verdict) -> str:
    """`` (protocol)`` for verdicts judged under a protocol variant, so repeated claims can be told apart."""
    name = v.protocol.split(";")[0].strip()
    return f" *({name})*" if name and not name.startswith("the paper's protocol") and "protocol" in name else ""


def _outcome_cell(v: Verdict) -> str:
    return f"**{v.outcome}**: {v.reason}" if v.reason and v.outcome != "agrees" else f"**{v.outcome}**"


def _difference_cell(v: Verdict) -> str:
    """The claim-oriented estimate and interval in the verdict's unit ("points": fractions printed x100)."""
    if not math.isfinite(v.difference):
        return "n/a"
    if v.unit == "log ratio":  # judged on the log scale, read as a ratio
        ci = f"[{math.exp(v.low):.2f}, {math.exp(v.high):.2f}]" if math.isfinite(v.low) else "[n/a]"
        return f"x{math.exp(v.difference):.2f} {ci} ratio"
    scale, digits = (100.0, 1) if v.unit == "points" else (1.0, 3)
    interval = (
        f"[{scale * v.low:.{digits}f}, {scale * v.high:.{digits}f}]"
        if math.isfinite(v.low) and math.isfinite(v.high)
        else "[n/a]"
    )
    return f"{scale * v.difference:+.{digits}f} {interval}{' ' + v.unit if v.unit else ''}"


def write_report(
    out_dir: str | os.PathLike[str], title: str, sections: Sequence[Section], intro: str = "", *, summary: bool = True
) -> tuple[Path, Path]:
    """Write ``report.md`` (images linked) and ``report.html`` (images embedded) into ``out_dir``; with
    ``summary``, a table of every section's verdicts follows the intro and ``verdicts.json`` lists them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = settle_verdicts(sections)
    md_parts = [f"# {title}", intro] if intro else [f"# {title}"]
    table = verdict_table(sections) if summary else ""
    if table:
        sections = [
            Section(
                "Verdicts at a glance",
                "Every claim judged in this report (details, protocols and "
                "seeds in each section). " + VERDICT_RULE + "\n\n" + table + "\n\n" + _families_note(sections),
            ),
            *sections,
        ]
        atomic_write_json(
            out / "verdicts.json", [{**v.to_dict(), "section": s.title} for s in sections for v in s.verdicts]
        )
    for s in sections:
        md_parts.append(f"## {s.title}\n\n{s.markdown}")
        for img in s.images:
            rel = os.path.relpath(Path(img), out)
            md_parts.append(f"![{Path(img).stem}]({rel})")
    md = "\n\n".join(md_parts) + "\n"
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, md)
    atomic_write_text(html_path, _to_html(title, intro, sections))
    return md_path, html_path


#: The verdict rule, as reports state it.
VERDICT_RULE = (
    "Claims about models are replicated over seeds: the estimate is the mean over paired seeds (both arms "
    "trained with the same seed) of the claim-oriented difference, with a 95 % t-interval over seeds. A "
    f"claim with fewer than {MIN_SEEDS} paired seeds is **not tested**. It **agrees** or **disagrees** only "
    "when the interval excludes zero and its Holm-adjusted p-value within its family is below "
    f"{ALPHA}; otherwise it is **inconclusive**. Each compared model is checked on the claim's own "
    "evaluation view (accuracy at least chance + 10 points, no class taking 90 % of its predictions, "
    "finite metrics): a model that did not train makes the claim **void**; the claim's subject failing "
    "on that view after it trained is the measured outcome **fails under protocol**."
)


def _families_note(sections: Sequence[Section]) -> str:
    """How many claims each family holds, and the error rate Holm holds within it."""
    counts = Counter(v.family or v.claim for s in sections for v in s.verdicts if math.isfinite(v.p_adjusted))
    if not counts:
        return ""
    parts = ", ".join(f"{name} ({n})" for name, n in counts.items())
    return (
        f"Multiplicity: Holm's procedure within each family holds the family-wise error rate at {ALPHA:.0%} "
        f"per family; families (tested claims): {parts}."
    )


def _embed(img: Path) -> str:
    """A PNG image as an ``<img>`` with its bytes inline (reports embed the PNG of each figure)."""
    data = base64.b64encode(img.read_bytes()).decode()
    return f'<img alt="{html.escape(img.stem)}" src="data:image/png;base64,{data}">'


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}th,td{border:1px solid #ccc;padding:4px 9px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:0.5em 0}
code{background:#f5f5f5;padding:1px 4px}h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.6em}"""


def _to_html(title: str, intro: str, sections: Sequence[Section]) -> str:
    import markdown

    conv = lambda text: markdown.markdown(text, extensions=["tables", "fenced_code"])  # noqa: E731
    body = [f"<h1>{html.escape(title)}</h1>", conv(intro) if intro else ""]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body.append(conv(s.markdown))
        body.extend(_embed(Path(img)) for img in s.images if Path(img).suffix == ".png")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def strip_markdown(text: str) -> str:
    """Plain text for a terminal: drop bold markers and links."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text)


__all__ = ["Section", "settle_verdicts", "strip_markdown", "verdict_line", "write_report"]
