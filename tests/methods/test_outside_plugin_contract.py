"""The public method contract (:mod:`rlcf_bench.testing`) on plugins that live outside the
repository's packages: one-file plugins written into ``tmp_path`` and loaded as
``--plugins-dir`` loads them. The guide's own example passes; a method that leaves a parameter
changed, and one whose result depends on the batch, are caught with a message naming the clause."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlcf_bench.testing import ContractViolation, MethodContract, check_method_contract

REPO = Path(__file__).resolve().parents[2]

HEADER = '''
from rlcf_bench import Batch, Method, MethodContext, MethodSpec, Predictions, hookimpl
from rlcf_bench.tta.prompts import class_text_features


class Broken(Method[None]):
    name = "{name}"
    max_batch = 8

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.text = class_text_features(ctx)

    def logits(self, batch: Batch):
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            f = F.normalize(self.ctx.model.encode_image(batch.images).float(), dim=-1)
        return self.ctx.model.logit_scale * f @ self.text.t()
'''

FOOTER = '''

@hookimpl
def rlcfb_register_methods():
    return [MethodSpec.from_method(Broken)]
'''

#: adapt nudges a parameter of the image tower and nothing puts it back
LEAVES_A_PARAMETER_CHANGED = '''
    def adapt(self, batch: Batch) -> None:
        import torch

        with torch.no_grad():
            next(self.ctx.model.visual.parameters()).add_(1e-3)

    def predict(self, batch: Batch) -> Predictions:
        return Predictions(logits=self.logits(batch))
'''

#: the logits are centred on the batch's mean: with one sample, every class ties
DEPENDS_ON_THE_BATCH = '''
    def predict(self, batch: Batch) -> Predictions:
        logits = self.logits(batch)
        return Predictions(logits=logits - logits.mean(0, keepdim=True))
'''


def _plugin(tmp_path: Path, stem: str, code: str) -> Path:
    folder = tmp_path / f"outside-{stem}"
    folder.mkdir()
    (folder / f"{stem}.py").write_text(code)
    return folder


def _guide_example() -> str:
    code = re.search(r"```python\n(# my_confident_views\.py\n.*?)```", (REPO / "README.md").read_text(), re.S)
    assert code, "the README's one-file example is missing"
    return code.group(1)


def test_the_guide_example_as_an_outside_plugin_keeps_the_contract(tmp_path: Path) -> None:
    folder = _plugin(tmp_path, "my_confident_views", _guide_example())
    check_method_contract("my-confident-views", tmp_path, plugins_dirs=[folder])


def test_the_guide_example_passes_lint_as_a_baselines_file() -> None:
    """The guide says: drop the file into baselines/. CI then runs ruff on it (make lint)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).is_file():
        pytest.skip("ruff is not installed (the dev extra)")
    done = subprocess.run([ruff, "check", "--stdin-filename", "baselines/rlcf_bench_baselines/my_confident_views.py", "-"],
                          input=_guide_example(), text=True, capture_output=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("stem", "body", "clause"), [
    ("leaves_changed", LEAVES_A_PARAMETER_CHANGED, r"\(a\) leaves-changed left the model's parameters changed"),
    ("depends_on_batch", DEPENDS_ON_THE_BATCH, r"\(b\) depends-on-batch: sample .* depends on the batch size"),
], ids=["leaves-a-parameter-changed", "depends-on-the-batch"])
def test_a_broken_outside_method_fails_the_contract(tmp_path: Path, stem: str, body: str, clause: str) -> None:
    name = stem.replace("_", "-")
    folder = _plugin(tmp_path, stem, HEADER.format(name=name) + body + FOOTER)
    with pytest.raises(ContractViolation, match=clause):
        MethodContract(name, tmp_path, plugins_dirs=(folder,)).check()
