"""The open-set task's report section: paired DeLong tests of each method's AUROC against the
zero-shot run of the same dataset, model and protocol (``docs/open-set.md#paired-tests``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rlcf_bench import ReportSection

REFERENCE = "zero-shot"


def _ood_scores(store: Any, run_id: int) -> dict[str, tuple[float, bool]]:
    """``sample_id -> (OOD score, is OOD)`` of a stored open-set run."""
    from sqlalchemy import select

    from rlcf_bench.store import SampleResult

    with store.session() as s:
        rows = s.execute(select(SampleResult.sample_id, SampleResult.extra).where(SampleResult.run_id == run_id))
        return {sid: (float(extra["ood_score"]), bool(extra.get("ood"))) for sid, extra in rows
                if extra and "ood_score" in extra}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def delong_section(rows: Sequence[Any], store: Any) -> ReportSection | None:
    """One table row per (dataset, method) with a zero-shot partner of the same model and protocol."""
    from ._openset_stats import delong_paired

    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in rows:
        groups[(r.dataset, r.model, r.protocol_hash)].append(r)
    lines = []
    for (dataset, model, _), members in sorted(groups.items()):
        refs = [r for r in members if r.method == REFERENCE and not r.options]
        if not refs:
            continue
        ref = refs[0]
        ref_scores = _ood_scores(store, ref.run_id)
        for row in sorted(members, key=lambda r: r.method_label):
            if row is ref:
                continue
            scores = _ood_scores(store, row.run_id)
            shared = sorted(set(scores) & set(ref_scores))
            flags = [scores[s][1] for s in shared]
            if sum(flags) < 2 or len(flags) - sum(flags) < 2:
                continue
            t = delong_paired([scores[s][0] for s in shared], [ref_scores[s][0] for s in shared], flags)
            lines.append(f"| {_cell(dataset)} | {_cell(model)} | {_cell(row.method_label)} | {100 * t.auroc_a:.2f} | "
                         f"{100 * t.auroc_b:.2f} | {100 * t.diff:+.2f} [{100 * t.ci_low:+.2f}, {100 * t.ci_high:+.2f}] | "
                         f"{'p<0.001' if t.p_value < 0.001 else f'p={t.p_value:.3f}'} | {t.n_id}/{t.n_ood} |")
    if not lines:
        return None
    head = ("Paired DeLong tests of the AUROC of each method's OOD score against the zero-shot run of the same "
            "dataset, model and protocol, on the samples both stored (two-sided, unadjusted; 95 % interval of "
            "the difference in points).\n\n"
            "| dataset | model | method | AUROC | zero-shot AUROC | difference [95% CI] | p | ID/OOD |\n"
            "|---|---|---|---:|---:|---|---|---|")
    return ReportSection("Open-set: AUROC against zero-shot (DeLong)", head + "\n" + "\n".join(lines) + "\n")
