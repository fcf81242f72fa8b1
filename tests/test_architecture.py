"""The import direction between the parts, as ARCHITECTURE.md draws it.

Data flows one way: cli -> Store -> (index -> disk) -> rules -> records -> errors; logs.py
(the deferred logger) stands beside them and imports nothing of ours. Each
module's imports (top level and inside functions) are read with ast, so the picture in
ARCHITECTURE.md cannot drift from the code without this failing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fleetbox_db

PACKAGE = Path(fleetbox_db.__file__).resolve().parent

#: What each part may import of ours. "api" is fleetbox_db/__init__.py, the public face.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "logs": set(),
    "keys": set(),
    "records": {"errors", "keys"},
    "rules": {"errors", "records", "keys"},
    "disk": {"errors", "records", "keys", "rules", "logs"},
    "index": {"errors", "records", "rules", "disk", "logs"},
    "store": {"errors", "records", "rules", "disk", "index", "logs"},
    "cli": {"api", "errors", "records", "rules", "logs"},
    "api": {"errors", "records", "rules", "disk", "store"},
    "__main__": {"cli"},
}


def part_of(module: str) -> str:
    """The part a dotted module name belongs to: fleetbox_db.index.mirror -> index."""
    parts = module.split(".")
    assert parts[0] == "fleetbox_db", module
    return "api" if len(parts) == 1 else parts[1].removesuffix(".py")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    names = list(relative.parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def imports_of(path: Path) -> set[str]:
    """Every fleetbox_db module *path* imports, resolved to dotted names."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fleetbox_db"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("fleetbox_db"):
                found.add(base)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_part_imports_only_the_parts_below_it(path: Path) -> None:
    part = part_of(module_name(path))
    for imported in imports_of(path):
        other = part_of(imported)
        if other != part:
            assert other in ALLOWED[part], f"{module_name(path)} imports {imported}"


def test_every_part_is_drawn() -> None:
    parts = {part_of(module_name(p)) for p in MODULES}
    assert parts == set(ALLOWED)


def test_architecture_md_names_every_module() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    for path in MODULES:
        relative = str(path.relative_to(PACKAGE))
        if path.name != "__init__.py" or path.parent == PACKAGE:
            assert relative in text or path.name in text, relative


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if p.name == "__init__.py" and p.parent != PACKAGE],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_subpackage_inits_import_nothing_heavy(path: Path) -> None:
    """index/__init__ in particular: the CLI's path must not load SQLAlchemy or Alembic."""
    tree = ast.parse(path.read_text())
    heavy = {"sqlalchemy", "alembic", "filelock", "click"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & heavy
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in heavy


def test_sqlalchemy_is_imported_at_top_level_only_by_the_models() -> None:
    for path in MODULES:
        top = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom)]
        roots = {(n.module or "").split(".")[0] for n in top}
        if roots & {"sqlalchemy", "alembic"}:
            assert path.relative_to(PACKAGE) == Path("index/models.py"), path
