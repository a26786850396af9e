"""``rlcf-bench data check DATASET`` and ``rlcf-bench data list``.

The commands use the session's :class:`~rlcf_bench.plugins.PluginHost` (to see every registered
dataset, third-party ones included), which the CLI group puts in the click context object.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from rlcf_bench import hookimpl
from rlcf_bench.types import LayoutReport, check_params

from ._common import DATA_ROOT_HINT


def _host(ctx: click.Context) -> Any:
    from rlcf_bench.plugins import PluginHost

    found = ctx.find_object(PluginHost)
    if found is None:
        raise click.UsageError("the data commands must run inside the rlcf-bench command group")
    return found


def _parse_params(items: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--param {item!r}: expected key=value")
        params[key.strip()] = value.strip()
    return params


def _data_root(value: str | None) -> Path | None:
    from rlcf_bench.datasets import resolve_data_root

    try:
        return resolve_data_root(value)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def check_dataset(spec: Any, root: Path | None, params: dict[str, Any]) -> LayoutReport:
    """Run a spec's check; datasets without one get a plain folder-presence report."""
    if spec.check is not None:
        report: LayoutReport = spec.check(root, **params)
        return report
    report = LayoutReport(dataset=spec.name, root=str(root))
    if spec.root_name is None:
        report.ok_items.append("generated data: nothing to check on disk")
    elif root is None:
        report.add(f"<data root>/{spec.root_name}", DATA_ROOT_HINT, "no data root configured")
    elif not (root / spec.root_name).is_dir():
        report.add(str(root / spec.root_name), f"folder {spec.root_name}/", "no such directory")
    else:
        report.ok_items.append(f"{root / spec.root_name} (this dataset defines no detailed check)")
    return report


def _folder_missing(report: LayoutReport, root: Path | None, root_name: str) -> bool:
    """True when the first problem is that the dataset folder (or the data root) is absent."""
    if not report.problems:
        return False
    path = report.problems[0].path
    return root is None or path in {str(root), str(root / root_name)}


@click.group("data", epilog="\b\nExamples:\n  rlcf-bench data list --data-root /data\n  rlcf-bench data check imagenet-v2 --data-root /data")
def data_group() -> None:
    """Check and list the real datasets under the data root."""


@data_group.command("check", epilog="\b\nExample:\n  rlcf-bench data check imagenet-c --data-root /data --param corruption=gaussian_noise --param severity=3")
@click.argument("dataset")
@click.option("--data-root", default=None, help="root of real datasets (else $RLCF_BENCH_DATA_ROOT, else the config file)")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="dataset parameter, e.g. severity=3")
@click.option("--quick", is_flag=True, help="check the layout only; do not decode every image")
@click.option("--workers", type=click.IntRange(min=1), default=8, show_default=True, help="decoding threads")
@click.pass_context
def check_cmd(ctx: click.Context, dataset: str, data_root: str | None, params: tuple[str, ...], quick: bool,
              workers: int) -> None:
    """Report what is present, missing or malformed for DATASET, then decode every image it lists
    (unless --quick); exit 1 on problems."""
    from rlcf_bench.registry import RegistryError

    host = _host(ctx)
    given = _parse_params(params)
    try:
        spec = host.dataset(dataset, given)
        check_params(f"dataset {spec.name!r}", given, spec.param_rules, spec.params)
    except (RegistryError, TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        report = check_dataset(spec, _data_root(data_root), given)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(report.render())
    if not report.ok:
        click.echo(f"\n{len(report.problems)} problem(s): a run on {dataset!r} would stop with this report.", err=True)
        ctx.exit(1)
    if quick or (spec.root_name is None and spec.check is None):  # generated data has no files to decode
        return
    bad = decode_all(spec, _data_root(data_root), _parse_params(params), workers)
    if bad:
        click.echo(f"\n{len(bad)} image(s) cannot be decoded (a run stops at the first, unless --on-corrupt skip):",
                   err=True)
        for line in bad[:20]:
            click.echo(f"  {line}", err=True)
        ctx.exit(1)


def decode_all(spec: Any, root: Path | None, params: dict[str, Any], workers: int) -> list[str]:
    """Decode every image of the built dataset in parallel, with a progress bar on stderr: the
    dataset object a run builds, and its ``load_image``, the very call a run makes per sample
    (:func:`rlcf_bench.datasets.undecodable`), so a check that passes is a run that can read
    every image."""
    from tqdm import tqdm

    from rlcf_bench.datasets import undecodable

    data = spec.build(root, **params)
    with tqdm(total=len(data), desc=f"decoding {spec.name}", unit="image", file=sys.stderr, leave=False) as bar:
        bad = undecodable(data, workers=workers, progress=bar.update)
    click.echo(f"decoded {len(data) - len(bad)} of {len(data)} image(s)")
    return bad


@data_group.command("list", epilog="\b\nExample:\n  rlcf-bench data list --data-root /data --check")
@click.option("--data-root", default=None, help="root of real datasets (else $RLCF_BENCH_DATA_ROOT, else the config file)")
@click.option("--check", "full", is_flag=True, help="run every dataset's full layout check (slower)")
@click.pass_context
def list_cmd(ctx: click.Context, data_root: str | None, full: bool) -> None:
    """List datasets with their expected folder and status (present / missing / ok / PROBLEMS)."""
    root = _data_root(data_root)
    click.echo(f"data root: {root if root is not None else '(not set: ' + DATA_ROOT_HINT + ')'}")
    rows: list[tuple[str, str, str]] = []
    for spec in host_datasets(ctx):
        if spec.root_name is None:
            rows.append((spec.name, "generated", "-"))
            continue
        path = str(root / spec.root_name) if root is not None else f"<data root>/{spec.root_name}"
        if root is not None and (root / spec.root_name).is_dir() and not full:
            rows.append((spec.name, "present", path))
            continue
        report = check_dataset(spec, root, {})
        if full:
            status = "ok" if report.ok else ("missing" if _folder_missing(report, root, spec.root_name) else f"PROBLEMS ({len(report.problems)})")
        else:
            status = "missing" if _folder_missing(report, root, spec.root_name) else "present"
        rows.append((spec.name, status, path))
    width = max((len(r[0]) for r in rows), default=4)
    swidth = max((len(r[1]) for r in rows), default=6)
    for name, status, path in rows:
        click.echo(f"{name:<{width}}  {status:<{swidth}}  {path}")


def host_datasets(ctx: click.Context) -> list[Any]:
    return list(_host(ctx).registry("datasets"))


@hookimpl
def rlcfb_add_commands(cli: Any) -> None:
    cli.add_command(data_group)
