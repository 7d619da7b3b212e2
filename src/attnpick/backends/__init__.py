"""One file per attention backend, each exporting a `Backend` (`base.py`); `attnpick.backends.registry` is their ordered
registry. Adding a backend: one file here, one line in `registry.BACKENDS`, one row in the decision tests."""
