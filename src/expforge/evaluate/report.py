"""An evaluation as one self-contained HTML page (the Vertex UI renders ``system.HTML`` artifacts inline)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFUSION_PNG = "confusion_matrix.png"


def _per_class_rows(per_class: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for label, stats in per_class.items():
        cells = "".join(f"<td>{float(stats.get(key, 0.0)):.4f}</td>" for key in ("precision", "recall", "f1"))
        rows.append(f"<tr><td>{html.escape(str(label))}</td>{cells}<td>{int(stats.get('support', 0))}</td></tr>")
    return "\n".join(rows)


def render_html_report(result: Mapping[str, Any], evaluation_dir: Path | str) -> str:
    """HTML with headline metrics, the per-class table and the confusion-matrix PNG embedded (base64), so
    the page stays readable when copied out of the pipeline root."""
    png = Path(evaluation_dir) / CONFUSION_PNG
    image = ""
    if png.is_file():
        encoded = base64.b64encode(png.read_bytes()).decode("ascii")
        image = f'<img alt="confusion matrix" src="data:image/png;base64,{encoded}"/>'
    split = html.escape(str(result.get("split", "")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Evaluation ({split})</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:right}}</style></head>
<body>
<h2>Evaluation on split <code>{split}</code> ({int(result.get("n", 0))} images)</h2>
<p>accuracy <b>{float(result["accuracy"]):.4f}</b> · macro-F1 <b>{float(result["macro_f1"]):.4f}</b></p>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{_per_class_rows(result.get("per_class", {}))}
</table>
{image}
</body></html>
"""
