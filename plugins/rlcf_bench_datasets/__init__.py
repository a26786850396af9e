"""Real dataset families in their standard on-disk layouts. One submodule per family."""
