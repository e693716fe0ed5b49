"""The package's architecture (docs/architecture.md) as the imports show it.

Read from the source with ``ast``. Circles count every import, inside functions
and under ``TYPE_CHECKING`` too; the layers count module-level imports only (an
import inside a function is a deliberate, documented late binding).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vidgo_async"

# Each layer may import from the layers listed for it (and from itself).
# The shared bottom (errors, _config, _converter, _models, _events, _lifecycle, _validate) is
# open to all.
BOTTOM = {"errors", "_config", "_converter", "_models", "_events", "_lifecycle", "_validate"}
ALLOWED = {
    "_timing": {"_timing"},
    "_wire": {"_wire", "_timing"},
    "_ops": {"_ops", "_wire", "_timing"},
    "_batch": {"_batch", "_ops", "_wire", "_timing"},
    # The PostgreSQL integration (extra ``postgres``): the limiter rules, the batch journal,
    # the callback registry.
    "_postgres": {"_postgres", "_timing", "_wire", "_ops", "_batch"},
}
# Optional integrations: public modules users import by name, and their internals.
OPTIONAL = {"vidgo_async.postgres": "vidgo_async._postgres"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path, *, anywhere: bool = False) -> set[str]:
    """Modules of the package that ``path`` imports at module level (or ``anywhere``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if anywhere else tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("vidgo_async"):
                # ``from . import x`` imports the module x when there is one, not the package.
                submodules = {f"{target}.{alias.name}" for alias in node.names}
                found |= {m for m in submodules if _exists(m)} or {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vidgo_async")}
    return found


def _graph(*, anywhere: bool = False) -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "testing" not in p.parts]
    return {_module_name(p): _imports(p, anywhere=anywhere) for p in files}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_circles() -> None:
    """No module of the package (its fake aside) imports itself through others."""
    graph = _graph(anywhere=True)
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in graph:
                continue
            if seen.get(target) == 1:
                pytest.fail("import circle: " + " -> ".join([*path, module, target]))
            if target not in seen:
                visit(target, [*path, module])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [])


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer: str) -> None:
    """_timing is pure; _wire builds on it; _ops on both; _batch on all three."""
    wrong = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if _layer(module) == layer
        for target in targets
        if _layer(target) not in ALLOWED[layer] | BOTTOM
    ]
    assert wrong == []


@pytest.mark.parametrize("integration", sorted(OPTIONAL))
def test_the_core_never_imports_an_optional_integration(integration: str) -> None:
    """Only the integration itself imports its internals; nothing imports the integration."""
    internals = OPTIONAL[integration]
    for module, targets in _graph().items():
        if module == integration or module.startswith(internals):
            continue
        assert not {t for t in targets if t == integration or t.startswith(internals)}, module


def test_the_timing_layer_does_no_io() -> None:
    """The rules and schedules import no network, file or clock-sleeping module."""
    forbidden = {"aiohttp", "asyncio", "socket", "sqlite3", "os"}
    for path in (PACKAGE / "_timing").glob("*.py"):
        # Grants handed out on the loop's timer; a 429's pause of the submits waited out.
        if path.name in ("limits.py", "grants.py", "uncapped.py"):
            continue
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert not names & forbidden, path.name


def test_the_cli_uses_only_the_public_api() -> None:
    """The CLI is a shell over ``vidgo_async``, its public modules and its own package."""
    public = {"vidgo_async", "vidgo_async.errors", "vidgo_async.testing", "vidgo_async.webhooks"}
    for module, targets in _graph().items():
        if _layer(module) == "_cli":
            assert {t for t in targets if not t.startswith("vidgo_async._cli")} <= public, module


def test_only_the_otel_module_imports_opentelemetry() -> None:
    """opentelemetry (the otel extra) is imported by vidgo_async.otel alone; nothing imports it."""
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
        if path.name != "otel.py":
            assert "opentelemetry" not in names, path.name
    assert not [m for m, targets in _graph().items() if "vidgo_async.otel" in targets]


def main() -> None:
    """Print the package's import graph by layer: ``python tests/test_layout.py``."""
    graph = _graph()
    layers = [*sorted(ALLOWED), "_cli"]
    for layer in ("", *layers):
        modules = sorted(m for m in graph if (_layer(m) if _layer(m) in layers else "") == layer)
        print(f"[{layer or 'top and shared bottom'}]")
        for module in modules:
            targets = sorted(t.removeprefix("vidgo_async.") for t in graph[module])
            print(f"  {module.removeprefix('vidgo_async.') or '__init__'} -> {', '.join(targets)}")


if __name__ == "__main__":
    main()
