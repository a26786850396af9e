"""``rlcf-bench caption ...``: train captioners and extract the training features
(``docs/original-code.md#captioner-training``).

* ``caption train --preset micro`` reproduces the shipped ``micro-captioner``
  (``plugins/rlcf_bench_micro/captioner/``): a preset is offered by the plugin that owns it
  (``CAPTION_PRESETS``, below), so this package imports no suite.
* ``caption train --features FILE.pkl --kind clipcap|capdec --decoder DIR --clip NAME --out DIR``
  trains a ClipCap/CapDec mapper on the original-format feature dictionary (COCO features of the
  released
  pickle, or ``caption extract``'s output) with a pretrained OPT from a local folder (frozen) or a
  tiny random OPT (``--decoder tiny``, trained with the mapper).
* ``caption extract --dataset NAME --clip NAME --out FILE.pt`` writes that dictionary of any
  captioning dataset with any CLIP model.

Training is seeded and resumes from ``OUT/train_state`` when re-run with the same arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench import hookimpl
from rlcf_bench.plugins import PluginHost

if TYPE_CHECKING:
    import click

#: The module attribute by which a registered plugin offers ``caption train --preset NAME``:
#: ``CAPTION_PRESETS = {NAME: train}``, where ``train(out_dir, *, session, seed, clip, steps, n_images,
#: progress, log)`` trains the captioner (into ``out_dir``, or the preset's own folder when ``None``)
#: and returns ``(summary, folder)``; ``summary`` holds ``steps``, ``wall_time_s`` and ``final_loss``.
#: The presets are looked up on the session's plugins, so this package imports no suite.
PRESETS_ATTRIBUTE = "CAPTION_PRESETS"


def caption_presets(host: PluginHost) -> dict[str, Callable[..., tuple[dict[str, Any], Path]]]:
    """Every ``--preset`` the session's plugins offer; two plugins offering one name is an error."""
    import click

    found: dict[str, Callable[..., tuple[dict[str, Any], Path]]] = {}
    owner: dict[str, str] = {}
    for plugin_name, plugin in sorted(host.pm.list_name_plugin(), key=lambda item: item[0]):
        for name, train in (getattr(plugin, PRESETS_ATTRIBUTE, None) or {}).items():
            if name in found:
                raise click.UsageError(f"caption preset {name!r} is offered by plugins {owner[name]!r} and "
                                       f"{plugin_name!r}; block one with -p no:PLUGIN")
            found[name], owner[name] = train, plugin_name
    return found


def _host(ctx: click.Context) -> PluginHost:
    """The session's plugin host, which ``rlcf-bench`` puts on the click context."""
    import click

    host = ctx.find_object(PluginHost)
    if host is None:
        raise click.UsageError("the caption commands run under rlcf-bench (no plugin host on the command line)")
    return host


@hookimpl
def rlcfb_add_commands(cli: click.Group) -> None:
    import click

    @click.group(name="caption", help="Captioning: train ClipCap/CapDec captioners, extract CLIP features.",
                 epilog="\b\nExample:\n  rlcf-bench caption train --preset micro --out /tmp/captioner")
    def caption() -> None:
        pass

    @caption.command(name="train", help="Train a captioner (seeded, resumable, safetensors checkpoints).",
                     epilog="\b\nExamples:\n  rlcf-bench caption train --preset micro --out /tmp/captioner\n  rlcf-bench caption train --features feats.pkl --clip ViT-B-32@openai --out /ckpt/clipcap")
    @click.option("--preset", default=None,
                  help="a training preset of an installed plugin, e.g. micro: the micro suite's captioner (photo "
                       "training split, micro-student features)")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                  help="checkpoint folder (default for --preset micro: the shipped plugin folder)")
    @click.option("--features", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="feature dictionary in the original format (.pkl or .pt)")
    @click.option("--kind", type=click.Choice(["clipcap", "capdec"]), default="clipcap", show_default=True)
    @click.option("--clip", "clip_name", default=None, help="CLIP model name of the features (recorded; loaded at test time)")
    @click.option("--decoder", default="tiny", show_default=True,
                  help="local OPT folder or hub name (frozen), or 'tiny' (random, trained with the mapper)")
    @click.option("--tokenizer", "tokenizer_dir", default=None,
                  help="tokenizer folder (default: the decoder's; a BPE trained on the captions for --decoder tiny)")
    @click.option("--steps", type=int, default=None)
    @click.option("--epochs", type=int, default=10, show_default=True)
    @click.option("--batch-size", type=int, default=40, show_default=True)
    @click.option("--lr", type=float, default=2e-5, show_default=True)
    @click.option("--warmup", type=int, default=5000, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--prefix-length", type=int, default=40, show_default=True)
    @click.option("--mapper-layers", type=int, default=8, show_default=True)
    @click.option("--mapper-heads", type=int, default=8, show_default=True)
    @click.option("--n-images", type=int, default=None, help="--preset micro: training images")
    @click.option("--threads", type=int, default=None, help="torch CPU threads")
    @click.option("--no-progress", is_flag=True)
    @click.pass_context
    def train_cmd(ctx: click.Context, preset: str | None, out_dir: str | None, features: str | None, kind: str, clip_name: str | None,
                  decoder: str, tokenizer_dir: str | None, steps: int | None, epochs: int, batch_size: int, lr: float,
                  warmup: int, seed: int, prefix_length: int, mapper_layers: int, mapper_heads: int,
                  n_images: int | None, threads: int | None, no_progress: bool) -> None:
        import torch

        from rlcf_bench.session import ComponentSession

        if threads:
            torch.set_num_threads(threads)
        if preset is not None:
            host = _host(ctx)
            presets = caption_presets(host)
            if preset not in presets:
                raise click.BadParameter(f"unknown preset {preset!r} (installed: {', '.join(sorted(presets)) or 'none'})",
                                         param_hint="--preset")
            session = ComponentSession(host, device="cpu")
            summary, folder = presets[preset](out_dir, session=session, seed=seed, clip=clip_name, steps=steps,
                                              n_images=n_images, progress=not no_progress, log=click.echo)
            click.echo(f"trained {summary['steps']} steps in {summary['wall_time_s']:.0f} s, final loss "
                       f"{summary['final_loss']:.3f} → {folder}")
            return
        if not (features and out_dir and clip_name):
            raise click.UsageError("without --preset, --features, --clip and --out are required")
        _train_from_features(features, out_dir, kind=kind, clip_name=clip_name, decoder=decoder,
                             tokenizer_dir=tokenizer_dir, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                             warmup=warmup, seed=seed, prefix_length=prefix_length, mapper_layers=mapper_layers,
                             mapper_heads=mapper_heads, progress=not no_progress, log=click.echo)

    @caption.command(name="extract", help="Write the training-feature dictionary of a captioning dataset.",
                     epilog="\b\nExample:\n  rlcf-bench caption extract --dataset flickr30k-captions --clip ViT-B-32@openai --out feats.pkl --data-root /data")
    @click.option("--dataset", required=True)
    @click.option("--clip", "clip_name", required=True)
    @click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False))
    @click.option("--data-root", default=None)
    @click.option("-n", "limit", type=int, default=None, help="first N images only")
    @click.pass_context
    def extract_cmd(ctx: click.Context, dataset: str, clip_name: str, out_file: str, data_root: str | None,
                    limit: int | None) -> None:
        from rlcf_bench.session import ComponentSession

        from ._clipcap.features import extract_features, save_features

        session = ComponentSession(_host(ctx), data_root=data_root)
        spec = session.host.dataset(dataset)
        data = session.dataset(spec, dict(spec.params))
        vlm = session.vlm(clip_name)
        n = min(len(data), limit) if limit else len(data)
        feats = extract_features(vlm, data.load_image, n, data.references,
                                 image_ids=[data.sample_id(i) for i in range(n)], progress=True)
        save_features(feats, out_file)
        click.echo(f"{n} images, {len(feats['captions'])} captions → {out_file}")

    cli.add_command(caption)


def _train_from_features(features: str, out_dir: str, *, kind: str, clip_name: str, decoder: str,
                         tokenizer_dir: str | None, steps: int | None, epochs: int, batch_size: int, lr: float,
                         warmup: int, seed: int, prefix_length: int, mapper_layers: int, mapper_heads: int,
                         progress: bool, log: Any) -> None:
    import tempfile

    import torch
    from transformers import OPTForCausalLM

    from ._clipcap.features import load_features
    from ._clipcap.mapper import MapperConfig
    from ._clipcap.model import tiny_opt_config
    from ._clipcap.tokenizer import load_tokenizer, train_bpe
    from ._clipcap.train import TrainConfig, train_captioner

    feats = load_features(features)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = decoder == "tiny"
        copy_tokenizer: str | None = tokenizer_dir
        if tokenizer_dir is None and tiny:
            copy_tokenizer = str(train_bpe(feats["captions"], Path(tmp) / "tokenizer"))
        tokenizer = load_tokenizer(copy_tokenizer or decoder)
        if tiny:
            dec = OPTForCausalLM(tiny_opt_config(len(tokenizer)))
            extra: dict[str, Any] = {"max_new_tokens": 20}
        else:
            dec = OPTForCausalLM.from_pretrained(decoder, local_files_only=True)
            # The original: OPT's tokenizer, no EOS appended, generation stops at "\n".
            extra = {"decoder": str(Path(decoder).resolve()) if Path(decoder).exists() else decoder,
                     "eos": "newline", "append_eos": False, "max_new_tokens": 50}
            if copy_tokenizer is None:  # the decoder folder's own tokenizer, referenced, not copied
                extra["tokenizer"] = extra["decoder"]
        width = int(dec.get_input_embeddings().embedding_dim)
        mcfg = MapperConfig(prefix_dim=int(feats["clip_image_embedding"].shape[1]), dim=width,
                            clip_length=prefix_length, prefix_length=prefix_length, layers=mapper_layers,
                            heads=mapper_heads)
        cfg = TrainConfig(kind=kind, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, warmup=warmup,
                          seed=seed, train_decoder=tiny)
        summary = train_captioner(feats, out_dir, clip_model=clip_name, mapper_config=mcfg, decoder=dec,
                                  tokenizer=tokenizer, tokenizer_dir=copy_tokenizer, config=cfg, settings_extra=extra,
                                  progress=progress, log=log)
    log(f"trained {summary['steps']} steps in {summary['wall_time_s']:.0f} s, final loss {summary['final_loss']:.3f} "
        f"→ {out_dir} (load as {kind}@{out_dir})")
