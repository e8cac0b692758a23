"""Imports run one way (DESIGN.md, "Components"; STYLE.md rule 12).

`upcs` (CLI) -> `hub`, `gateway`, `sync` -> `blocklist`; hub, gateway and sync never import each
other; `gateway.sip` imports nothing of the project; `blocklist` knows nothing of SIP, Redis or SQL.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("blocklist", "gateway", "sync", "hub", "upcs", "bench")

# package -> project packages it may import
ALLOWED: dict[str, frozenset[str]] = {
    "blocklist": frozenset({"blocklist"}),
    "gateway": frozenset({"gateway", "blocklist"}),
    "sync": frozenset({"sync", "blocklist"}),
    "hub": frozenset({"hub", "blocklist"}),
    "upcs": frozenset({"upcs", "hub", "gateway", "sync", "blocklist"}),
}
# third-party modules a pure layer must not touch
FORBIDDEN_THIRD_PARTY: dict[str, frozenset[str]] = {
    "blocklist": frozenset({"redis", "sqlalchemy", "alembic", "asyncio", "socket", "gateway"}),
    "gateway.sip": frozenset({"asyncio", "socket", "time", "redis", "sqlalchemy", "selectors"}),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_project_imports_run_one_way(package: str) -> None:
    offences = []
    for path in _modules(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PROJECT and top not in ALLOWED[package]:
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)


def test_gateway_sip_imports_nothing_of_the_project() -> None:
    offences = []
    for path in _modules("gateway.sip"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PROJECT and not name.startswith("gateway.sip"):
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_THIRD_PARTY))
def test_pure_layers_do_no_io(package: str) -> None:
    offences = []
    for path in _modules(package):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN_THIRD_PARTY[package]:
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)
