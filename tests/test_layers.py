"""Every import points down: a module may import only from its own layer's package or a lower layer.

Walks every ``import`` / ``from ... import`` in ``app/`` and ``workers/`` with ``ast`` — including
imports inside functions and under ``TYPE_CHECKING`` — and compares each edge with the table below.
The table is the README's layout table; a new top-level module must be added to it (the test fails
on an unknown module rather than letting it float free).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each top-level unit, lowest first. A unit imports only from units of a lower layer
#: (or from itself). Units in one layer do not import each other.
LAYERS: dict[str, int] = {
    "app.config": 0,
    "app.errors": 0,
    "app.retrying": 0,
    "app.tokens": 0,
    "app.metrics": 1,
    "app.lexical": 1,
    "app.storage": 1,
    "app.db": 1,
    "app.embeddings": 2,
    "app.vectorstore": 2,
    "app.indexes": 3,
    # Chat providers: they reuse app.embeddings' HTTP helpers, redaction and rate limiter.
    "app.chat": 3,
    "app.pipeline": 4,
    "app.outbox": 4,
    "app.services": 5,
    "app.apikeys": 5,
    "app.jobqueue": 5,
    # The composition root: only the entry points above it build one.
    "app.runtime": 6,
    # Answers with references: search results in (app.services), chat providers below.
    "app.answers": 6,
    "app.evaluation": 7,
    "app.api": 7,
    "workers": 7,
    "app.cli": 8,
    "app.entry": 9,
}

#: Stages inside the pipeline, in the order a document passes them; a stage never imports a later
#: one (the orchestrators ``process`` and ``ingest`` sit on top).
PIPELINE_STAGES: dict[str, int] = {
    "app.pipeline.extract": 0,
    "app.pipeline.chunk": 0,
    "app.pipeline.budget": 1,
    "app.pipeline.parts": 1,
    "app.pipeline.reuse": 1,
    "app.pipeline.process": 2,
    "app.pipeline.ingest": 3,
    "app.pipeline.build": 3,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module (and ``from`` member) a file of ``package``
    imports."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def _unit(name: str, table: dict[str, int]) -> str | None:
    """The longest key of ``table`` that ``name`` is or lies inside, else None."""
    best = None
    for key in table:
        if (name == key or name.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


def _sources() -> list[Path]:
    return sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")])


def _edges(table: dict[str, int], scope: str) -> list[tuple[str, int, str, str]]:
    """``(file, line, importer unit, imported unit)`` for every cross-unit import within scope."""
    edges = []
    for path in _sources():
        importer = _unit(_module_name(path), table)
        if importer is None or not (importer == scope or importer.startswith(scope)):
            continue
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, name in _imports(path, package):
            imported = _unit(name, table)
            if imported is not None and imported != importer:
                edges.append((str(path.relative_to(ROOT)), line, importer, imported))
    return edges


def test_every_module_has_a_layer() -> None:
    unknown = [
        str(p.relative_to(ROOT))
        for p in _sources()
        if _module_name(p) not in ("app",) and _unit(_module_name(p), LAYERS) is None
    ]
    assert unknown == [], f"add these to LAYERS (and the README's layout table): {unknown}"


@pytest.mark.parametrize(
    ("table", "scope"), [(LAYERS, ""), (PIPELINE_STAGES, "app.pipeline")], ids=["app", "pipeline"]
)
def test_imports_point_down(table: dict[str, int], scope: str) -> None:
    upward = [
        f"{file}:{line}: {importer} (layer {table[importer]}) imports {imported} "
        f"(layer {table[imported]})"
        for file, line, importer, imported in _edges(table, scope)
        if table[imported] >= table[importer]
    ]
    assert upward == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker itself: an upward import written into a file is found (relative ones too)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from app.runtime import Runtime\n    from . import cli\n", "utf-8"
    )
    names = [name for _, name in _imports(probe, "app.pipeline")]
    assert "app.runtime.Runtime" in names
    assert "app.pipeline.cli" in names
    assert _unit("app.runtime.Runtime", LAYERS) == "app.runtime"
    assert LAYERS["app.runtime"] > LAYERS["app.pipeline"]
