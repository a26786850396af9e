"""The RLCF method family (prompt tuning, image-encoder tuning, retrieval, captioning).

Each public submodule is one method and registers itself; no list to edit here.
"""
