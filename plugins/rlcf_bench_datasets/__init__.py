"""Real dataset families in their standard on-disk layouts. One submodule per family (see README.md).

Submodules: ``imagenet``, ``finegrained``, ``retrieval``, ``captioning`` (datasets), ``commands``
(``rlcf-bench data check/list``), ``references`` (the paper's reported numbers). ``_common`` holds the
shared scanning and validation helpers and is not a plugin.
"""
