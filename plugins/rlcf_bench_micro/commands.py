"""``rlcf-bench micro ...``: train and evaluate the micro suite's model zoo.

The commands live apart from :mod:`.zoo` (the models) because training (:mod:`._train`) builds on
the zoo's definitions: the zoo does not import its trainer, so the two form no import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlcf_bench import hookimpl

from .zoo import WEIGHTS_DIR, ZOO_NAMES, load_zoo_model, zero_shot_accuracy

if TYPE_CHECKING:
    import click


@hookimpl
def rlcfb_add_commands(cli: click.Group) -> None:
    import click

    @click.group(name="micro", help="The embedded micro suite: train and evaluate its model zoo.",
                 epilog="\b\nExamples:\n  rlcf-bench micro eval-zoo -n 200\n  rlcf-bench micro train-zoo --out /tmp/zoo")
    def micro() -> None:
        pass

    @micro.command(name="train-zoo", help="Train micro-student and micro-reward from scratch (seeded).",
                   epilog="\b\nExample:\n  rlcf-bench micro train-zoo --out /tmp/zoo --model micro-student")
    @click.option("--out", "out_dir", default=str(WEIGHTS_DIR), show_default=True, type=click.Path(file_okay=False))
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--quick", is_flag=True, help="A few tiny steps (smoke test), not a usable model.")
    @click.option("--steps", default=None, type=int, help="Override the number of training steps of every model.")
    @click.option("--model", "models", multiple=True, type=click.Choice(ZOO_NAMES), help="Train only these.")
    @click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1),
                  help="Threads per model (the shipped weights: 2; another count gives other bytes).")
    @click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
                  help="Models trained in parallel processes.")
    def train_zoo_cmd(out_dir: str, seed: int, quick: bool, steps: int | None, models: tuple[str, ...],
                      threads: int, jobs: int) -> None:
        from ._train import train_zoo

        manifest = train_zoo(out_dir, seed=seed, quick=quick, steps=steps, models=models or ZOO_NAMES,
                             threads=threads, jobs=jobs, log=click.echo)
        for name, entry in manifest["models"].items():
            click.echo(f"{name}: photo val {entry['val_accuracy']:.3f}, shifted val mean "
                       f"{entry['val_shifted_mean']:.3f}, {entry['wall_time_s']:.0f} s, sha256 {entry['sha256'][:12]}")

    @micro.command(name="eval-zoo", help="Zero-shot accuracy of the zoo on every micro test domain.",
                   epilog="\b\nExample:\n  rlcf-bench micro eval-zoo -n 200 --severity 3")
    @click.option("--weights", "weights_dir", default=str(WEIGHTS_DIR), show_default=True)
    @click.option("-n", "n", default=500, show_default=True, type=int)
    @click.option("--severity", default=3, show_default=True, type=int)
    @click.option("--threads", default=2, show_default=True, type=int)
    def eval_zoo_cmd(weights_dir: str, n: int, severity: int, threads: int) -> None:
        import torch

        from .generator import CORRUPTIONS, DOMAINS, generate

        torch.set_num_threads(threads)
        models = {name: load_zoo_model(name, "cpu", weights_dir) for name in ZOO_NAMES}
        click.echo(f"| domain | n | {' | '.join(models)} |")
        click.echo("|---|---|" + "---|" * len(models))
        for domain in DOMAINS + CORRUPTIONS:
            data = generate(domain, n, seed=0, split="test", severity=severity)
            imgs = data.images
            accs = [zero_shot_accuracy(m, imgs, data.labels.tolist()) for m in models.values()]
            label = domain if domain in DOMAINS else f"{domain}-{severity}"
            click.echo(f"| {label} | {n} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + " |")

    cli.add_command(micro)
