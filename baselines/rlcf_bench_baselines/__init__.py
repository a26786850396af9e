"""Baseline TTA methods, one file each. Every public module here that defines an ``rlcfb_`` hook
is registered as a plugin (``baselines.<module>``) through the ``baselines`` entry point; there is
no list to edit."""
