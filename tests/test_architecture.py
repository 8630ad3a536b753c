"""The package layering, read from the code's own imports (ast): ui -> evals -> ingest -> rag, no cycle,
Chroma only in rag/store.py, llama_cpp only in rag/llm_llama_cpp.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag", "ingest", "evals", "ui")
# Each package may import the ones listed (and itself); everything above it in the stack is forbidden.
ALLOWED = {"rag": set(), "ingest": {"rag"}, "evals": {"rag", "ingest"}, "ui": {"rag", "ingest", "evals"}}
BACKENDS = {"chromadb": "rag/store.py", "llama_cpp": "rag/llm_llama_cpp.py"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module name ``path`` imports (statements, and ``importlib.import_module("...")`` literals)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "load_module") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, node.lineno))
    return found


def _package_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for name, line in _imports(path):
                top = name.split(".")[0]
                if top in PACKAGES and top != pkg:
                    edges.setdefault((pkg, top), []).append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return edges


def test_imports_go_one_way() -> None:
    edges = _package_edges()
    wrong = [where for (src, dst), places in edges.items() if dst not in ALLOWED[src] for where in places]
    assert not wrong, "imports against the layering ui -> evals -> ingest -> rag:\n" + "\n".join(wrong)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for src, dst in _package_edges():
        graph[src].add(dst)

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    cycles = [p for p in PACKAGES if reaches(p, p, {p})]
    assert not cycles, f"packages on an import cycle: {cycles} ({graph})"


def test_backends_are_imported_in_one_module_each() -> None:
    wrong = []
    for pkg in (*PACKAGES, "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, line in _imports(path):
                home = BACKENDS.get(name.split(".")[0])
                if home is not None and rel != home:
                    wrong.append(f"{rel}:{line} imports {name} (only {home} may)")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_imports_of_every_kind(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import chromadb\nfrom ui.app import x\nimport importlib\nimportlib.import_module('llama_cpp')\n"
                     "def f():\n    from rag.store import Index\n")
    assert sorted(n for n, _ in _imports(probe)) == ["chromadb", "importlib", "llama_cpp", "rag.store", "ui.app"]


def _assigned_names(path: Path) -> list[tuple[str, int]]:
    """The names ``path`` binds at module level (``X = ...``, ``X, Y = ...``, ``X: int = ...``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            elts = target.elts if isinstance(target, ast.Tuple) else [target]
            found += [(e.id, node.lineno) for e in elts if isinstance(e, ast.Name)]
    return found


def test_exit_statuses_are_defined_once() -> None:
    """EXIT_OK / EXIT_FAILED / EXIT_ERROR live in rag/errors.py; the CLIs import them."""
    wrong = [f"{path.relative_to(ROOT)}:{line} defines {name}" for pkg in (*PACKAGES, "bench")
             for path in sorted((ROOT / pkg).rglob("*.py")) if path.relative_to(ROOT).as_posix() != "rag/errors.py"
             for name, line in _assigned_names(path) if name.startswith("EXIT_")]
    assert not wrong, "\n".join(wrong)
    from rag import errors
    from ui import commands

    assert (commands.EXIT_OK, commands.EXIT_FAILED, commands.EXIT_ERROR) == (errors.EXIT_OK, errors.EXIT_FAILED,
                                                                            errors.EXIT_ERROR) == (0, 1, 2)


# rag/quiz/text.py still imports tokenize through rag.retrieval (its owners move it to rag.text).
TOKENIZE_PENDING = {"rag/quiz/text.py"}


def test_text_rules_do_not_depend_on_retrieval() -> None:
    """rag/text.py (normalisation, the tokenizer) imports no other studybot module, and ``tokenize`` is imported
    from it, not through the keyword index or retrieval."""
    inner = [name for name, _ in _imports(ROOT / "rag" / "text.py") if name.split(".")[0] in PACKAGES]
    assert not inner, f"rag/text.py imports {inner}"
    wrong = []
    for pkg in (*PACKAGES, "bench", "tests"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.ImportFrom) and node.module in ("rag.keyword", "rag.retrieval")
                        and any(a.name == "tokenize" for a in node.names) and rel not in TOKENIZE_PENDING):
                    wrong.append(f"{rel}:{node.lineno} imports tokenize from {node.module} (use rag.text)")
    assert not wrong, "\n".join(wrong)
