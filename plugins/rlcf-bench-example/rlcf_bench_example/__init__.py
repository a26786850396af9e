"""An rlcf-bench plugin distribution kept as a template for third parties (and to test that
plugins are discovered through the ``rlcf_bench`` entry-point group)."""
