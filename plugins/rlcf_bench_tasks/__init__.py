"""First-party tasks: ``classification``, ``retrieval`` and ``captioning``, one module each, plus
``captioning_commands`` (``rlcf-bench caption ...``). Private, not plugins: ``_retrieval`` (the
gallery, directions and ranks retrieval methods share) and ``_clipcap/`` (the ClipCap/CapDec model,
trainer and caption metrics)."""
