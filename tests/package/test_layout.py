"""Test-suite layout. Test files have unique basenames: the suite runs without packages (rootdir import mode), where
two ``test_x.py`` in different folders collide at collection and stop the whole run."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_names_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name.startswith("test_"))
    assert not [n for n, c in names.items() if c > 1], sorted(n for n, c in names.items() if c > 1)


def test_pytestmark_is_assigned_once_per_module() -> None:
    """A second ``pytestmark = ...`` silently replaces the first (a ``models`` mark was lost so)."""
    twice = []
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        ]
        if names.count("pytestmark") > 1:
            twice.append(str(path.relative_to(TESTS)))
    assert not twice, twice


def test_the_package_ships_its_typing_marker_and_the_repository_its_license() -> None:
    """``Typing :: Typed`` without ``py.typed``: a user's mypy skipped every annotation; Apache-2.0
    declared without its text (hatchling puts both in the wheel; review 2026-12-05)."""
    root = TESTS.parent
    assert (root / "rag_relax_plugins" / "py.typed").is_file()
    assert 'license = "Apache-2.0"' in (root / "pyproject.toml").read_text(encoding="utf-8")
    assert (root / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License\n")
