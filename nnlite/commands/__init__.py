"""Subcommands of the ``nnlite`` CLI beyond info/demo: each module here defines
``register(subparsers)`` adding its parser (with ``set_defaults(func=...)``)."""
