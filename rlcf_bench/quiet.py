"""Third-party chatter silenced where it starts, so a run's terminal shows only the bench's own lines.

* ``transformers`` prints a "Loading weights" progress bar per ``from_pretrained`` and info logs;
  :func:`quiet_transformers` turns both off (errors still print).
* Newer ``transformers`` deprecates the ``past_key_values`` keyword in favour of ``cache``; the
  captioner keeps the keyword every supported version understands, so that one FutureWarning is
  filtered (by its exact message: any other warning still shows).
* The PTB tokenizer of ``pycocoevalcap`` is a Java process whose stderr reports token counts;
  :func:`quiet_stderr` sends the process's stderr to a buffer and replays it only on failure.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


def quiet_transformers() -> None:
    """No weight-loading bars, no info logs, no ``past_key_values`` deprecation warning."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Redirect file descriptor 2 (child processes included) to a temporary file; replay what was
    written there if the block raises, so a real error is never hidden."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            buf.seek(0)
            sys.stderr.write(buf.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
