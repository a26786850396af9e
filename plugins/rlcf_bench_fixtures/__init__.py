"""Tiny, deterministic components for smoke tests: a random tiny CLIP and a generated
four-colour dataset. They run in seconds on a CPU and need nothing downloaded."""
