"""The paper numbers a report shows beside measured ones, read without writing.

``run`` (and ``rlcf-bench store refresh-references``) store the installed plugins' reference
rows; a report reads the stored rows and overlays, in memory only, what the installed plugins
register now — the rows a ``run`` would store — so a report never writes into the store it reads
(a read-only file, a copy being inspected, a store another process is writing) and still shows
the current numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..store import Reference

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost
    from ..store import Store

RefKey = tuple[str, str, str, str, str, str, str]


def _key(task: str, dataset: str, method: str, model: str, reward_model: str | None, metric: str,
         source: str) -> RefKey:
    return (task, dataset, method, model, reward_model or "", metric, source)


def reference_rows(store: Store, host: PluginHost | None) -> list[Reference]:
    """The stored reference rows with the installed plugins' overlaid (same rows and order as
    after :meth:`Store.upsert_references`, computed in memory; nothing is written)."""
    rows = list(store.references())
    if host is None:
        return rows
    index = {_key(r.task, r.dataset, r.method, r.model, r.reward_model, r.metric, r.source): i
             for i, r in enumerate(rows)}
    for ref in host.references():
        key = _key(ref.task, ref.dataset, ref.method, ref.model, ref.reward_model, ref.metric, ref.source)
        row = Reference(task=ref.task, dataset=ref.dataset, method=ref.method, model=ref.model,
                        reward_model=ref.reward_model or "", metric=ref.metric, value=ref.value, source=ref.source,
                        note=ref.note)
        if key in index:
            rows[index[key]] = row
        else:
            index[key] = len(rows)
            rows.append(row)
    return rows
