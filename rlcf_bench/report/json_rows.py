"""JSON: an array of leaderboard rows (``LeaderboardRow.as_dict``, ``"row_kind": "run"``), then the
average rows over declared dataset groups (``AverageRow.as_dict``, ``"row_kind": "average"``),
full precision, NaN as null."""

from __future__ import annotations

import json

from .rows import Report


def render_json(report: Report) -> str:
    items = [row.as_dict() for row in report.rows] + [a.as_dict() for a in report.averages]
    return json.dumps(items, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
