"""Reports: Markdown and self-contained HTML (plots embedded) built from sections of experiments."""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nrflab.core.fmt import markdown_table
from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.core.stats import Verdict


@dataclass
class Section:
    """One part of a report: a title, a Markdown body, images (paths) shown under it, and the verdicts
    the body states (collected into the report's summary table and ``verdicts.json``)."""

    title: str
    markdown: str
    images: list[Path] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


def verdict_line(verdict: Verdict) -> str:
    """One sentence per judged claim (see ``nrflab.core.stats.judge``), protocol included."""
    word = {
        "agrees": "**agrees**",
        "disagrees": "**disagrees**",
        "inconclusive": "is **inconclusive**",
        "void": f"is **void** ({verdict.reason})",
    }[verdict.outcome]
    protocol = f" Protocol: {verdict.protocol}." if verdict.protocol else ""
    return f"- {verdict.claim}: this run {word}. {verdict.evidence}{protocol}"


def verdict_table(sections: Sequence[Section]) -> str:
    """Every typed verdict of the sections in one table: section, claim, outcome, difference and interval."""
    rows = []
    for s in sections:
        for v in s.verdicts:
            rows.append([s.title, v.claim + _protocol_note(v), _outcome_cell(v), _difference_cell(v)])
    return markdown_table(["section", "claim", "verdict", "difference [95 % CI]"], rows) if rows else ""


def _protocol_note(v: Verdict) -> str:
    """`` (protocol)`` for verdicts judged under a protocol variant, so repeated claims can be told apart."""
    name = v.protocol.split(";")[0].strip()
    return f" *({name})*" if name and not name.startswith("the paper's protocol") and "protocol" in name else ""


def _outcome_cell(v: Verdict) -> str:
    return f"**void**: {v.reason}" if v.outcome == "void" else f"**{v.outcome}**"


def _difference_cell(v: Verdict) -> str:
    """The claim-oriented difference and interval, in the unit the evidence states ("points": x100)."""
    if not math.isfinite(v.difference):
        return "n/a"
    found = re.search(r"Difference \S+ (\w+)", v.evidence)
    unit = found.group(1) if found else ("points" if " points" in v.evidence else "")
    scale, digits = (100.0, 1) if unit == "points" else (1.0, 3)
    interval = (
        f"[{scale * v.low:.{digits}f}, {scale * v.high:.{digits}f}]"
        if math.isfinite(v.low) and math.isfinite(v.high)
        else "[n/a]"
    )
    return f"{scale * v.difference:+.{digits}f} {interval}{' ' + unit if unit else ''}"


def write_report(
    out_dir: str | os.PathLike[str], title: str, sections: Sequence[Section], intro: str = "", *, summary: bool = True
) -> tuple[Path, Path]:
    """Write ``report.md`` (images linked) and ``report.html`` (images embedded) into ``out_dir``; with
    ``summary``, a table of every section's verdicts follows the intro and ``verdicts.json`` lists them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_parts = [f"# {title}", intro] if intro else [f"# {title}"]
    table = verdict_table(sections) if summary else ""
    if table:
        sections = [
            Section(
                "Verdicts at a glance",
                "Every claim judged in this report (details, protocols and "
                "seeds in each section). " + VERDICT_RULE + "\n\n" + table,
            ),
            *sections,
        ]
        atomic_write_json(
            out / "verdicts.json", [{"section": s.title, **v.to_dict()} for s in sections for v in s.verdicts]
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
    "A claim **agrees** or **disagrees** only when the 95 % interval of the claim-oriented difference "
    "excludes zero; otherwise it is **inconclusive**. It is **void** when a compared model did not learn "
    "(near chance on its own training set, NaN, or one class for almost every test image) or when "
    "models are compared at very unequal usefulness."
)


def _embed(img: Path) -> str:
    data = Path(img).read_bytes()
    if img.suffix == ".svg":
        return f'<img alt="{html.escape(img.stem)}" src="data:image/svg+xml;base64,{base64.b64encode(data).decode()}">'
    return f'<img alt="{html.escape(img.stem)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


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


__all__ = [
    "Section",
    "markdown_table",
    "strip_markdown",
    "verdict_line",
    "write_report",
]
