"""Real dataset families in their standard on-disk layouts. One submodule per family (see README.md).

Submodules: ``imagenet``, ``finegrained``, ``retrieval``, ``captioning`` (datasets), ``commands``
(``rlcf-bench data check/list``), and the readers of
your own data by scheme: ``own_folder``, ``own_csv``, ``own_wds``, ``own_hf``. ``_common`` and
``_own`` hold the shared scanning and validation helpers and are not plugins.
"""
