"""JSON: an array of leaderboard rows (``LeaderboardRow.as_dict``), full precision, NaN as null."""

from __future__ import annotations

import json

from .rows import Report


def render_json(report: Report) -> str:
    return json.dumps([row.as_dict() for row in report.rows], indent=2, allow_nan=False, ensure_ascii=False) + "\n"
