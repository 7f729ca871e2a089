"""JSON of any shape as nested tables, with limits so a huge result file stays readable."""

from __future__ import annotations

import json
import math

from dcgan_cli.report.parts import (
    VIEW_MAX_DEPTH,
    VIEW_MAX_ITEMS,
    VIEW_MAX_NUMBERS,
    VIEW_MAX_TEXT,
)

# ---------------------------------------------------------------------------- JSON of any shape


def _scalar_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= VIEW_MAX_TEXT else text[:VIEW_MAX_TEXT] + f"… ({len(text):,} characters)"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def json_view(value, depth: int = 0) -> dict:
    """A tree the template draws as nested tables, whatever shape the JSON has.

    Nodes: {"type": "scalar", "text"}, {"type": "mapping", "items": [(key, node)]},
    {"type": "table", "columns", "rows"} for a list of flat objects, {"type": "list", "items"};
    each with "more" (items left out). Long lists of numbers are summarised in one line.
    """
    if _is_scalar(value):
        return {"type": "scalar", "text": _scalar_text(value), "number": is_number(value)}
    if depth >= VIEW_MAX_DEPTH:
        text = json.dumps(value, default=str)
        return {"type": "scalar", "text": _scalar_text(text), "number": False}
    if isinstance(value, dict):
        items = list(value.items())
        return {
            "type": "mapping",
            "items": [(str(k), json_view(v, depth + 1)) for k, v in items[:VIEW_MAX_ITEMS]],
            "more": max(0, len(items) - VIEW_MAX_ITEMS),
        }
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            return {"type": "scalar", "text": "(empty)", "number": False}
        if len(items) > VIEW_MAX_NUMBERS and all(is_number(v) for v in items):
            finite = [float(v) for v in items if math.isfinite(v)]
            summary = f"{len(items)} numbers"
            if finite:
                mean = sum(finite) / len(finite)
                summary += f": min {min(finite):.4g}, mean {mean:.4g}, max {max(finite):.4g}"
            return {"type": "scalar", "text": summary, "number": False}
        if all(is_number(v) for v in items):
            return {"type": "scalar", "text": ", ".join(_scalar_text(v) for v in items), "number": False}
        if all(isinstance(v, dict) for v in items):  # a list of records: one table
            columns: list[str] = []
            for row in items[:VIEW_MAX_ITEMS]:
                for key in row:
                    if str(key) not in columns:
                        columns.append(str(key))
            if len(columns) <= 24:
                rows = [
                    [json_view(row[c], depth + 1) if c in row else None for c in columns]
                    for row in ({str(k): v for k, v in r.items()} for r in items[:VIEW_MAX_ITEMS])
                ]
                return {"type": "table", "columns": columns, "rows": rows, "more": max(0, len(items) - VIEW_MAX_ITEMS)}
        return {
            "type": "list",
            "items": [json_view(v, depth + 1) for v in items[:VIEW_MAX_ITEMS]],
            "more": max(0, len(items) - VIEW_MAX_ITEMS),
        }
    return {"type": "scalar", "text": _scalar_text(str(value)), "number": False}
