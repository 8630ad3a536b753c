"""Every tunable number has its provenance (README, Settings or module constants): a module-level UPPER_CASE
numeric constant in rag/, ui/, evals/ or ingest/ carries a comment on its own line(s) or on the lines directly
above it, saying what it is and where its value comes from (measured with which bench, a library's default, or
set by hand and why). Settings carry theirs in rag/settings.py beside each field; this test reads the code with
``ast``, so it cannot tell a good comment from a bad one: it only makes a missing one fail."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag", "ui", "evals", "ingest")


def _numeric(node: ast.expr) -> bool:
    """A number written in the code: 0.85, -0.2, 4 * 1024 * 1024, (1, 10, 5); not True/False, not a name."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    if isinstance(node, ast.Tuple):
        return bool(node.elts) and all(_numeric(e) for e in node.elts)
    return False


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple):
        return [n for e in target.elts for n in _names(e)]
    return []


def uncommented_constants(source: str) -> list[tuple[int, str]]:
    """(line, names) of the module-level UPPER_CASE numeric constants in ``source`` with no comment on their
    lines or on the line directly above (a comment block ending there)."""
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names, value = [n for t in node.targets for n in _names(t)], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            names, value = _names(node.target), node.value
        else:
            continue
        if not names or not all(n.isupper() for n in names) or not _numeric(value):
            continue
        end = node.end_lineno or node.lineno
        inline = any("#" in lines[i - 1] for i in range(node.lineno, end + 1))
        above = node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#")
        if not (inline or above):
            out.append((node.lineno, ", ".join(names)))
    return out


def test_the_audit_finds_an_uncommented_number_and_accepts_a_commented_one() -> None:
    source = "\n".join([
        "import re",
        "LIMIT = 5",  # no comment: found
        "# 0.3: measured with bench/x.py",
        "WEIGHT = 0.3",
        "CAP = 4 * 1024  # set by hand: a page",
        "LOW, HIGH = 1, 10",  # found
        "# a comment, then a blank line",
        "",
        "GAP = -2",  # the comment is not directly above: found
        "_PAGE: int = 2000",  # private names count too: found
        "NAME = 'x'",  # not a number
        "FLAG = True",  # not a number
        "lower = 3",  # not a constant
        "PATTERN = re.compile('a')",
        "def f():",
        "    INNER = 3",  # not module level
    ])
    assert uncommented_constants(source) == [(2, "LIMIT"), (6, "LOW, HIGH"), (9, "GAP"), (10, "_PAGE")]


def test_every_module_constant_number_says_where_it_comes_from() -> None:
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, names in uncommented_constants(path.read_text(encoding="utf-8")):
                missing.append(f"{path.relative_to(ROOT)}:{line}: {names}")
    assert not missing, (
        "module constants without a comment saying what they are and where their value comes from (measured "
        "with which bench, a library's default, or 'set by hand: why'; or make it a setting):\n  "
        + "\n  ".join(missing))
