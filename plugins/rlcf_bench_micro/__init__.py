"""The embedded micro suite: generated data with controlled shifts (``generator``, ``data``), a
small model zoo (``zoo``, trained by ``_train``), its captioner (``captioner``) and the default suite
(``suite``)."""
