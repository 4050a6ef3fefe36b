"""Reports: Markdown and self-contained HTML (plots embedded) built from sections of experiments."""

from __future__ import annotations

import base64
import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .io import atomic_write_text
from .stats import Verdict


@dataclass
class Section:
    """One part of a report: a title, a Markdown body, and images (paths) shown under it."""

    title: str
    markdown: str
    images: list[Path] = field(default_factory=list)


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f} %"


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-style Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def claim_line(claim: str, agrees: bool | None, evidence: str) -> str:
    """One sentence per paper claim: does this run agree, and the numbers that say so."""
    verdict = {True: "**agrees**", False: "**disagrees**", None: "is **inconclusive**"}[agrees]
    return f"- {claim}: this run {verdict}. {evidence}"


def verdict_line(verdict: "Verdict") -> str:
    """One sentence per judged claim (see ``nrflab.stats.judge``), protocol included."""
    word = {"agrees": "**agrees**", "disagrees": "**disagrees**", "inconclusive": "is **inconclusive**",
            "void": f"is **void** ({verdict.reason})"}[verdict.outcome]
    protocol = f" Protocol: {verdict.protocol}." if verdict.protocol else ""
    return f"- {verdict.claim}: this run {word}. {verdict.evidence}{protocol}"


def write_report(out_dir: str | os.PathLike, title: str, sections: Sequence[Section], intro: str = "") -> tuple[Path, Path]:
    """Write ``report.md`` (images linked) and ``report.html`` (images embedded) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_parts = [f"# {title}", intro] if intro else [f"# {title}"]
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
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def strip_markdown(text: str) -> str:
    """Plain text for a terminal: drop bold markers and links."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text)


__all__ = ["Section", "claim_line", "markdown_table", "num", "pct", "strip_markdown", "verdict_line", "write_report"]
