"""Host-owned plugins (listed in ``rlcf_bench.plugins.BUILTIN_PLUGINS``)."""
