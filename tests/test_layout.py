"""The package map holds: who may import whom (docs/architecture.md, "Packages").

An agent author imports the SDK without pulling in the store; the store never reaches up
into hot backup, the SDK, the command line or the test equipment; the repository format
does not know the engines that use it. A new import that breaks a rule fails here, with
the module and the import named.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cleancut

ROOT = Path(cleancut.__file__).parent
TOP_LEVEL = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
PACKAGES = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
STORE = {"repository", "backend", "archiver", "restorer", "checker", "prune", "journal",
         "journal.repo", "ops", "replication", "settings", "fsio", "validation", "browse"}
ABOVE_THE_STORE = {"hot", "sdk", "cli", "testing"}


def _area(module: str) -> str:
    """The package a cleancut module belongs to (journal.repo apart from journal)."""
    parts = module.split(".")[1:]
    if not parts:
        return ""
    if parts[0] in TOP_LEVEL:
        return "top"
    if parts[:2] == ["journal", "repo"]:
        return "journal.repo"
    return parts[0]


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    targets = [f"{base}.{node.module}" if node.module else base]
                elif node.module:
                    targets = [node.module]
                if targets and targets[0] == "cleancut":
                    targets = [f"cleancut.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found.setdefault(module, set()).update(t for t in targets if t.startswith("cleancut."))
    return found


IMPORTS = _imports()


def _breaking(importer_areas: set[str], allowed: set[str]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if _area(module) in importer_areas
        for target in targets
        if _area(target) not in allowed | {_area(module)}
    )


def test_every_package_is_on_the_map() -> None:
    # A new package must be placed on the map (and in docs/architecture.md) before use.
    assert {
        "repository", "backend", "archiver", "restorer", "checker", "prune", "journal", "ops",
        "replication", "settings", "fsio", "validation", "hot", "sdk", "cli", "testing",
        "browse",
    } == PACKAGES


def test_the_store_never_imports_hot_backup_the_sdk_the_cli_or_test_equipment() -> None:
    everything = STORE | ABOVE_THE_STORE | {"top"}
    assert _breaking(STORE | {"top"}, everything - ABOVE_THE_STORE) == []


def test_the_store_names_no_module_above_it_for_a_dynamic_import() -> None:
    """importlib.import_module("cleancut.hot...") would pass the import check above: no
    store module spells the dotted name of a module above the store at all."""
    spelled = []
    files = [ROOT / f"{name}.py" for name in TOP_LEVEL]
    for area in STORE:
        files += (ROOT / area.replace(".", "/")).rglob("*.py")
    for path in files:
        text = path.read_text()
        spelled += [f"{path.relative_to(ROOT)}: cleancut.{above}" for above in ABOVE_THE_STORE
                    if f"cleancut.{above}." in text or f'"cleancut.{above}"' in text]
    assert spelled == []


def test_the_sdk_needs_only_errors_parsing_and_the_journal_format() -> None:
    assert _breaking({"sdk"}, {"top", "journal"}) == []


def test_the_journal_format_knows_no_repository() -> None:
    assert _breaking({"journal"}, {"top", "fsio"}) == []


def test_the_repository_format_knows_no_engine() -> None:
    assert _breaking({"repository"}, {"top", "fsio", "backend"}) == []


def test_backends_know_bytes_and_names_only() -> None:
    assert _breaking({"backend"}, {"top", "fsio"}) == []


def test_test_equipment_is_used_only_by_the_demo() -> None:
    users = sorted(
        module for module, targets in IMPORTS.items()
        if _area(module) != "testing" and any(_area(t) == "testing" for t in targets)
    )
    assert users == ["cleancut.cli.demo"]


def test_an_agent_imports_the_sdk_without_loading_the_store() -> None:
    probe = (
        "import sys\n"
        "import cleancut.sdk.server, cleancut.sdk.ledger, cleancut.sdk.journal_writer\n"
        "store = sorted(m for m in sys.modules if m.split('.')[:2] and m.startswith('cleancut.')"
        " and m.split('.')[1] not in ('sdk', 'journal', 'errors', 'jsonparse', 'clock', 'fsio'))\n"
        "print(' '.join(store))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == []


# What each store package's __init__.py says it must not import (docs/architecture.md).
MUST_NOT_IMPORT = {
    "repository": {"archiver", "restorer", "checker", "prune", "journal", "journal.repo", "ops",
                   "replication", "settings"},
    "checker": {"prune", "ops", "replication", "settings"},
    "prune": {"archiver", "restorer", "checker", "ops", "replication"},
    "replication": {"checker", "prune", "ops"},
    "settings": {"archiver", "restorer", "checker", "prune", "journal.repo", "ops",
                 "replication"},
    "journal.repo": {"prune", "checker", "ops", "replication", "settings"},
    "browse": {"archiver", "restorer", "checker", "prune", "journal.repo", "ops", "replication",
               "settings"},
}


def test_each_store_package_imports_only_what_its_docstring_allows() -> None:
    breaking = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        for target in targets
        if _area(target) in MUST_NOT_IMPORT.get(_area(module), set())
    )
    assert breaking == []
