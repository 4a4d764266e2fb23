"""Sub-commands of the ``rag-relax`` console script, one module each.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``, and optionally ``OUTPUT_KIND`` (``"dir"``, the
default, or ``"file"``: what ``--output`` names, checked before ``run``). :mod:`rag_relax_plugins.cli` discovers them,
so adding a command never edits a shared file. Heavy imports belong inside ``run``.
"""
