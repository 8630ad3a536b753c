"""The package layering, read from the code's own imports (ast): ui -> evals -> ingest -> rag, no cycle; inside
rag, study -> answer, quiz -> retrieval, health -> backends -> shared nouns and text rules; each backend library
imported by its one module in rag/backends/; tools/ (install scripts) standard library only and imported by none
of the four."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag", "ingest", "evals", "ui")
# Each package may import the ones listed (and itself); everything above it in the stack is forbidden.
ALLOWED = {"rag": set(), "ingest": {"rag"}, "evals": {"rag", "ingest"}, "ui": {"rag", "ingest", "evals"}}
# Each backend library and the one module that imports it.
BACKENDS = {"chromadb": "rag/backends/store.py", "llama_cpp": "rag/backends/llama_cpp.py",
            "openai": "rag/backends/openai_server.py", "bm25s": "rag/backends/keyword.py",
            "sentence_transformers": "rag/backends/embeddings.py", "torch": "rag/backends/embeddings.py"}


def _type_only(tree: ast.AST) -> set[ast.AST]:
    """The nodes under ``if TYPE_CHECKING:`` (names for annotations; nothing imported when the code runs)."""
    return {inner for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
            for stmt in node.body for inner in ast.walk(stmt)}


def _imports(path: Path, *, run_time: bool = False) -> list[tuple[str, int]]:
    """Every module name ``path`` imports (statements, and ``importlib.import_module("...")`` literals);
    ``run_time``: leave out the imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_only(tree) if run_time else set()
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if node in skip:
            continue
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


# Inside rag, what each part may not import, from the bottom up: the shared nouns and text rules (rag/*.py: types,
# errors, text, terms, citations, units, prompts, settings, the LLM interface), the backends (rag/backends/:
# one module per library), the modules that combine them (rag/retrieval.py, rag/health.py), then the answer path
# and the quizzes (neither uses the other), then study (cards and guides: uses both).
RAG_PARTS = ("rag/backends", "rag/answer", "rag/quiz", "rag/study")
NOUNS = ("rag/types.py", "rag/errors.py", "rag/text.py", "rag/terms.py", "rag/citations.py",
         "rag/units.py", "rag/prompts.py", "rag/settings.py", "rag/llm.py")  # llm: the interface backends implement
# (its registry names each backend's module as a string, imported when that backend is chosen)
SUBPACKAGES = ("rag.answer", "rag.quiz", "rag.study")
RAG_FORBIDDEN = {
    "rag": SUBPACKAGES,  # a module at rag/ level
    "rag/backends": (*SUBPACKAGES, "rag.retrieval", "rag.health"),
    "rag/answer": ("rag.quiz", "rag.study"),
    "rag/quiz": ("rag.answer", "rag.study"),
    "rag/study": (),
}
NOUN_FORBIDDEN = ("rag.backends", "rag.retrieval", "rag.health")
# Above rag: nothing of the four imports the install scripts or the benches.
OUTSIDE = ("tools", "bench")


def _part(rel: str) -> str:
    return next((part for part in RAG_PARTS if rel.startswith(part + "/")), "rag")


def _is_under(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def test_rag_subpackages_are_layered() -> None:
    """What runs imports nothing above it (an import under ``if TYPE_CHECKING:`` only names a type for an
    annotation, and is not counted)."""
    wrong = []
    for path in sorted((ROOT / "rag").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        forbidden = RAG_FORBIDDEN[_part(rel)] + (NOUN_FORBIDDEN if rel in NOUNS else ())
        for name, line in _imports(path, run_time=True):
            if _is_under(name, forbidden):
                wrong.append(f"{rel}:{line} imports {name} (a {_part(rel)} module may not import {forbidden})")
    assert not wrong, "\n".join(wrong)
    assert all((ROOT / noun).is_file() for noun in NOUNS) and all((ROOT / p).is_dir() for p in RAG_PARTS)


def test_the_packages_never_import_tools_or_benches_and_tools_only_the_standard_library() -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}" for pkg in PACKAGES
             for path in sorted((ROOT / pkg).rglob("*.py")) for name, line in _imports(path)
             if name.split(".")[0] in OUTSIDE]
    # tools/ runs before anything is installed (`make install`, the Dockerfile's build stage)
    wrong += [f"{path.relative_to(ROOT)}:{line} imports {name} (tools/ is standard library only)"
              for path in sorted((ROOT / "tools").rglob("*.py")) for name, line in _imports(path)
              if name.split(".")[0] not in (*sys.stdlib_module_names, "__future__", "tools")]
    assert not wrong, "\n".join(wrong)
    assert (ROOT / "tools" / "llama_build.py").is_file() and not (ROOT / "rag" / "llama_build.py").exists()


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
                     "def f():\n    from rag.backends.store import Index\n")
    assert sorted(n for n, _ in _imports(probe)) == ["chromadb", "importlib", "llama_cpp", "rag.backends.store", "ui.app"]
    typed = tmp_path / "typed.py"
    typed.write_text("from typing import TYPE_CHECKING\nimport typing\nif TYPE_CHECKING:\n    from rag.answer import A\n"
                     "if typing.TYPE_CHECKING:\n    import rag.quiz\nelse:\n    import rag.study\n")
    assert sorted(n for n, _ in _imports(typed)) == ["rag.answer", "rag.quiz", "rag.study", "typing", "typing"]
    assert sorted(n for n, _ in _imports(typed, run_time=True)) == ["rag.study", "typing", "typing"]


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
                if (isinstance(node, ast.ImportFrom) and node.module in ("rag.backends.keyword", "rag.retrieval")
                        and any(a.name == "tokenize" for a in node.names)):
                    wrong.append(f"{rel}:{node.lineno} imports tokenize from {node.module} (use rag.text)")
    assert not wrong, "\n".join(wrong)


# Each LLM backend class and its module (whose ``build`` the registry in rag/llm.py calls).
BACKEND_CLASSES = {"LlamaCppLLM": "rag/backends/llama_cpp.py", "OpenAICompatLLM": "rag/backends/openai_server.py"}


def test_llms_are_built_by_the_registry_and_usage_is_per_response() -> None:
    """A backend class is constructed only by its own module's ``build`` (which the registry calls); only rag/llm.py
    (the registry) matches the backend setting against a name; no code reads or writes a shared ``last_usage``
    (each call's usage is on its Response)."""
    wrong = []
    for pkg in (*PACKAGES, "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                cls = getattr(node.func, "id", getattr(node.func, "attr", None)) if isinstance(node, ast.Call) else None
                if cls in BACKEND_CLASSES and rel != BACKEND_CLASSES[cls]:
                    wrong.append(f"{rel}:{node.lineno} builds a backend itself (use rag.llm.get_llm / build_llm)")
                if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                        and node.left.attr == "backend" and rel != "rag/llm.py"):
                    wrong.append(f"{rel}:{node.lineno} matches the backend setting (ask the registry in rag.llm)")
    for pkg in (*PACKAGES, "bench", "tests"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "last_usage":
                    wrong.append(f"{rel}:{node.lineno} uses last_usage (read the call's Response.usage)")
    assert not wrong, "\n".join(wrong)


# bench/mcq_quality.py (in progress, its owner's) still puts the repository on sys.path; it runs as
# `python -m bench.mcq_quality` once that line goes.
SYS_PATH_PENDING: set[str] = set()


def _bench_pokes(path: Path, rel: str) -> list[str]:
    """What a bench (``rel``: its path in the repository) must not do: change sys.path, import a private name (or
    another bench's module other than bench.common), or use a private attribute of anything but its own objects
    (``self``, ``cls``)."""
    found = []
    # a bench imported by its bare name (what sys.path tricks allowed); "ingest" is the package's name too
    benches = {p.stem for p in (ROOT / "bench").glob("*.py")} - {*PACKAGES, "__init__"}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr in ("insert", "append", "extend")
                and isinstance(node.value, ast.Attribute) and node.value.attr == "path"
                and getattr(node.value.value, "id", None) == "sys"):
            if rel not in SYS_PATH_PENDING:
                found.append(f"{rel}:{node.lineno} changes sys.path (run it as python -m bench.<name>)")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            top = module.split(".")[0]
            private = [a.name for a in node.names if a.name.startswith("_")]
            if top in (*PACKAGES, "bench") and (private or any(p.startswith("_") for p in module.split("."))):
                found.append(f"{rel}:{node.lineno} imports a private name ({module}: {private})")
            if node.level or (top == "bench" and module != "bench.common") or top in benches:
                found.append(f"{rel}:{node.lineno} imports another bench ({module}; share through bench.common)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in PACKAGES and any(p.startswith("_") for p in parts):
                    found.append(f"{rel}:{node.lineno} imports a private module {alias.name}")
                if (parts[0] == "bench" and alias.name != "bench.common") or parts[0] in benches:
                    found.append(f"{rel}:{node.lineno} imports another bench ({alias.name})")
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and getattr(node.value, "id", None) not in ("self", "cls")):
            found.append(f"{rel}:{node.lineno} uses the private attribute .{node.attr} (add a public hook)")
    return sorted(found, key=lambda w: int(w.split(":", 2)[1].split(" ")[0]))


def test_benches_are_a_package_using_public_names_only(tmp_path: Path) -> None:
    assert (ROOT / "bench" / "__init__.py").is_file()
    wrong = [w for path in sorted((ROOT / "bench").glob("*.py"))
             for w in _bench_pokes(path, path.relative_to(ROOT).as_posix())]
    assert not wrong, "\n".join(wrong)
    # the check sees each kind of poke (and not a bench's own private attributes or a dunder)
    probe = tmp_path / "probe.py"
    probe.write_text("import sys\nsys.path.insert(0, '.')\nimport ingest.pipeline as pipeline\n"
                     "from rag.backends.keyword import _EPSILON\nfrom bench.scale import perturb\nimport bench.rank\n"
                     "from bench.common import rss_mb\npipeline._embed_and_add = None\nn = len(retriever._keyword)\n"
                     "self._own = 1\nx.__doc__\nimport ingest_variants\nfrom scale import rss_mb\n")
    found = _bench_pokes(probe, "bench/probe.py")
    assert [w.split(" ", 1)[0] for w in found] == [f"bench/probe.py:{n}" for n in (2, 4, 5, 6, 8, 9, 12, 13)], found


def test_every_registered_backend_is_a_module_in_rag_backends_with_the_registry_functions() -> None:
    """The registry names modules, not classes: each one lives in rag/backends/ and defines build, check and
    prepare with the signatures of :class:`rag.llm.BackendModule` (imported here: the backend libraries are not)."""
    import importlib
    import inspect

    from rag.llm import BACKENDS, BackendModule

    wrong = []
    for backend in BACKENDS.values():
        if not backend.module.startswith("rag.backends."):
            wrong.append(f"{backend.name}: {backend.module} is not in rag/backends/")
            continue
        module = importlib.import_module(backend.module)
        for name in ("build", "check", "prepare"):
            want = list(inspect.signature(getattr(BackendModule, name)).parameters)[1:]  # without self
            have = list(inspect.signature(getattr(module, name)).parameters) if hasattr(module, name) else None
            if have != want:
                wrong.append(f"{backend.module}.{name}{'' if have is None else have} (wants {want})")
    assert not wrong, "\n".join(wrong)
    assert {"llama_cpp", "openai"} <= set(BACKENDS)
