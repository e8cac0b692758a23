"""sync imports blocklist and libraries only: never hub, gateway or upcs (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import sync

FORBIDDEN = ("hub", "gateway", "upcs", "bench", "tests")


def test_sync_never_imports_other_layers() -> None:
    root = Path(sync.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
