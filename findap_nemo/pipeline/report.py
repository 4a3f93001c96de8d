"""The run report: markdown and one self-contained HTML page (images inlined) from the stages' own outputs."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Iterable

from findap_nemo.files import write_text_atomic


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)[:80]
    return "" if v is None else str(v)


def round1(x) -> float | None:
    """A measured value as the report tables show it: one decimal, None stays None."""
    return None if x is None else round(float(x), 1)


def md_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "_(none)_"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def plot_curves(series: dict[str, list[tuple[float, float]]], title: str, ylabel: str, out: Path) -> Path | None:
    """One line per named series of (x, y) points; returns the PNG path (None when there is nothing to plot)."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for name, pts in series.items():
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o" if len(pts) < 15 else None, markersize=3, label=name)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _curve(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["iteration"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]


class Report:
    """Accumulates sections; writes report.md (images as files) and report.html (images inlined)."""

    def __init__(self, title: str, out_dir: Path):
        self.title = title
        self.out_dir = Path(out_dir)
        self.parts: list[tuple[str, str]] = []  # (kind, payload): md text or image path

    def heading(self, text: str) -> None:
        self.parts.append(("md", f"## {text}"))

    def text(self, text: str) -> None:
        self.parts.append(("md", text))

    def image(self, path: Path | None) -> None:
        if path is not None and Path(path).is_file():
            self.parts.append(("img", str(path)))

    def write(self) -> tuple[Path, Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        md = [f"# {self.title}", ""]
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, payload in self.parts:
            if kind == "md":
                md += [payload, ""]
                body.append(_md_to_html(payload))
            else:
                rel = os.path.relpath(payload, self.out_dir)
                md += [f"![{Path(payload).stem}]({rel})", ""]
                data = base64.b64encode(Path(payload).read_bytes()).decode()
                body.append(f'<p><img alt="{html.escape(Path(payload).stem)}" src="data:image/png;base64,{data}"/></p>')
        md_path, html_path = self.out_dir / "report.md", self.out_dir / "report.html"
        write_text_atomic(md_path, "\n".join(md))
        style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
                 "text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
                 "img{max-width:100%}code{background:#f4f4f4;padding:1px 3px}")
        write_text_atomic(html_path, f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                                 f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
        return md_path, html_path




def _md_to_html(text: str) -> str:
    """The small markdown subset the report uses: headings, tables, bullet lists, paragraphs, `code`."""
    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)

    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not set(lines[i].replace("|", "").strip()) <= set("-: "):
                    rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            i -= 1
            if rows:
                head = "".join(f"<th>{inline(c)}</th>" for c in rows[0])
                body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
                out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            i -= 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    return "\n".join(out)


def loss_curves(metrics_rows: list[dict], keys: Iterable[str], title: str, out: Path) -> Path | None:
    return plot_curves({k: _curve(metrics_rows, k) for k in keys}, title, "value", out)
