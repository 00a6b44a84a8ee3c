"""Report blocks (headings, paragraphs, tables, images, the verdict) and their two renderings.

Markdown links the PNGs in ``plots/``; HTML embeds them as base64 data URIs so the file can be mailed or
attached to a ticket on its own. The run report (:mod:`segmentation.insights.report`) and the drift report
(:mod:`segmentation.drift.write`) are built from these blocks.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


# ------------------------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Heading:
    """A section title (level 1-3)."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table with a header row."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A plot from ``plots/`` (path relative to the run directory)."""

    path: str
    alt: str


@dataclass(frozen=True)
class Warnings:
    """Warnings shown in a highlighted box (or 'no warnings')."""

    items: list[str]


@dataclass(frozen=True)
class Verdict:
    """The run's verdict (strong, usable, weak), what it means, and the warnings behind it."""

    verdict: str
    meaning: str
    items: list[str]


@dataclass(frozen=True)
class Code:
    """Preformatted text (the configuration)."""

    text: str


Block = Heading | Para | Bullets | Table | Image | Warnings | Verdict | Code


# --------------------------------------------------------------------------------------- rendering
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    """Markdown with images linked relative to the run directory."""
    lines: list[str] = []
    for block in blocks:
        match block:
            case Heading(level, text):
                lines += [f"{'#' * level} {text}", ""]
            case Para(text):
                lines += [text, ""]
            case Bullets(items):
                lines += [*(f"- {item}" for item in items), ""]
            case Table(header, rows):
                lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                lines.append("| " + " | ".join("---" for _ in header) + " |")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            case Image(path, alt):
                lines += [f"![{alt}]({path})", ""]
            case Warnings(items):
                lines += [*(f"- **Warning:** {item}" for item in items)] if items else ["No warnings."]
                lines.append("")
            case Verdict(verdict, meaning, items):
                lines += [f"**Verdict: {verdict}**: {meaning}.", ""]
                lines += [*(f"- **Warning:** {item}" for item in items)] if items else ["No warnings."]
                lines.append("")
            case Code(text):
                lines += ["```yaml", text, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #1f77b4;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f3f5f8}img{max-width:100%;height:auto;display:block;
margin:1em 0}.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.6em 1em}
.ok{background:#eef8ee;border-left:4px solid #3a3;padding:.6em 1em}
.weak{background:#fdecec;border-left:4px solid #c33;padding:.6em 1em}pre{background:#f6f8fa;padding:1em;
overflow:auto;font-size:.85em}
"""


def render_html(blocks: list[Block], run_dir: Path) -> str:
    """One self-contained HTML file: styles inline, every image embedded as a data URI.

    Raises:
        FileNotFoundError: when a plot the report shows is missing (a report with a broken image is
            worse than none).
    """
    esc = html.escape
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Segments report")
    body: list[str] = []
    for block in blocks:
        match block:
            case Heading(level, text):
                body.append(f"<h{level}>{esc(text)}</h{level}>")
            case Para(text):
                body.append(f"<p>{esc(text)}</p>")
            case Bullets(items):
                body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
            case Table(header, rows):
                head = "".join(f"<th>{esc(h)}</th>" for h in header)
                cells = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            case Image(path, alt):
                data = base64.b64encode((run_dir / path).read_bytes()).decode("ascii")
                body.append(f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}" title="{esc(alt)}">')
            case Warnings(items):
                if items:
                    body.append(
                        '<div class="warn"><ul>'
                        + "".join(f"<li>{esc(i)}</li>" for i in items)
                        + "</ul></div>"
                    )
                else:
                    body.append('<div class="ok">No warnings.</div>')
            case Verdict(verdict, meaning, items):
                style = {"strong": "ok", "weak": "weak"}.get(verdict, "warn")
                body.append(
                    f'<div class="{style}"><p><strong>Verdict: {esc(verdict)}</strong>: {esc(meaning)}.</p>'
                    + ("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>" if items else "")
                    + ("</div>" if items else "<p>No warnings.</p></div>")
                )
            case Code(text):
                body.append(f"<pre>{esc(text)}</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
