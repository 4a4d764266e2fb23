"""The ``rag-relax`` console script: thin dispatch over the sub-command modules in ``_cli/``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType

from rag_relax_plugins import __version__
from rag_relax_plugins._errors import MissingExtraError
from rag_relax_plugins._progress import library_progress

__all__ = ["build_parser", "main"]


def _commands() -> list[ModuleType]:
    """Import every sub-command module of :mod:`rag_relax_plugins._cli`, sorted by name."""
    from rag_relax_plugins import _cli

    modules = []
    for info in sorted(pkgutil.iter_modules(_cli.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"rag_relax_plugins._cli.{info.name}"))
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog="rag-relax",
        description="Learned, differentiable retrieval and reranking for RAG.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _commands():
        name = module.NAME  # type: ignore[attr-defined]
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)  # type: ignore[attr-defined]
        module.add_arguments(p)  # type: ignore[attr-defined]
        p.set_defaults(_run=module.run, _output_kind=getattr(module, "OUTPUT_KIND", "dir"))  # type: ignore[attr-defined]
    return parser


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an ``--output`` of the wrong kind before a command does any work."""
    from pathlib import Path

    out = getattr(args, "output", None)
    if out is None:
        return
    if not str(out).strip():  # an unset shell variable: files would land in the working folder
        raise ValueError(f"--output must not be empty, got {out!r}")
    path = Path(out)
    if args._output_kind == "dir" and path.exists() and not path.is_dir():
        raise ValueError(f"--output {out} is an existing file; give a folder (new or from an earlier run)")
    if args._output_kind == "file" and path.is_dir():
        raise ValueError(f"--output {out} is a folder; give the path of the JSON file to write")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rag-relax``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt(), library_progress(not getattr(args, "no_progress", False)):
            _check_output(args)
            return int(args._run(args) or 0)
    except (ValueError, TypeError, OSError, MissingExtraError) as exc:  # OSError: missing, existing or
        # unwritable paths; MissingExtraError: an optional dependency, named with its pip line
        logging.getLogger(__name__).debug("rag-relax %s failed", args.command, exc_info=True)  # -v: traceback
        print(f"rag-relax {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (timeout, kill, a scheduler): one line, no traceback
        logging.getLogger(__name__).debug("rag-relax %s interrupted", args.command, exc_info=True)
        terminated = isinstance(exc, _Terminated)
        print(f"rag-relax {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; files being "
              "written were discarded, and a training run resumes from its last checkpoint", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's ``KeyboardInterrupt``."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` for the body: Python's default SIGTERM ends the process
    at once, leaving the temporary folder of a save in progress (``.<name>.tmp-*``) behind; as an
    exception it unwinds, and every atomic write removes its temporary files."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal only works there
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
