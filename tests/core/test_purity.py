"""The core and the ledger do no I/O: checked on their source and on a real import.

Every module of `switch/core/` and `ledger/` is inspected — and the server's deciding shell
(`switch/server/shell.py` with the two server modules it imports) — except the ledger's durability
layer — `ledger/journal*.py`, `ledger/recovery*.py`, `ledger/snapshot*.py` — which writes
files and talks to PostgreSQL by design (the server calls it; the state machines never do).

Two checks:
- AST: no import of an I/O, concurrency or clock module; no `open()`/`input()`; no clock
  reads (`time.time()`, `datetime.now()`, `perf_counter`...); `os` only for `os.environ`.
  The Cython core (`_core.pyx`) is scanned line by line for the same imports.
- sys.modules: importing `switch.core` and `ledger` in a fresh interpreter pulls in none of
  the forbidden modules, directly or through a dependency.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_MODULES = {
    "asyncio", "socket", "selectors", "ssl", "asyncpg", "redis", "sqlite3", "time",
    "threading", "subprocess", "multiprocessing", "concurrent", "http", "urllib", "shutil",
    "tempfile", "io", "pathlib", "uvloop", "signal", "logging",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "monotonic_ns",
               "perf_counter", "perf_counter_ns", "process_time"}
FORBIDDEN_BUILTINS = {"open", "input", "print", "breakpoint"}
OS_ALLOWED = {"environ"}  # ledger/__init__.py reads PONTE_PURE_PYTHON once at import
EXEMPT = re.compile(r"^(journal|recovery|snapshot)")


# The server's deciding shell (and what it imports from the server) decides like the core:
# the simulator runs it on fake I/O, so it must do none itself (issue 17).
SHELL_MODULES = [ROOT / "switch" / "server" / name
                 for name in ("shell.py", "limits.py", "metrics.py")]


def pure_modules() -> list[Path]:
    files = (sorted((ROOT / "switch" / "core").glob("*.py"))
             + sorted((ROOT / "ledger").glob("*.py")) + SHELL_MODULES)
    return [path for path in files if not (path.parent.name == "ledger" and EXEMPT.match(path.name))]


def test_the_exemption_is_exactly_the_durability_layer():
    exempt = sorted(p.name for p in (ROOT / "ledger").glob("*.py") if EXEMPT.match(p.name))
    assert exempt, "expected the journal modules to exist"
    assert all(name.startswith(("journal", "recovery", "snapshot")) for name in exempt)
    assert "reference.py" in {p.name for p in pure_modules()}
    assert "machine.py" in {p.name for p in pure_modules()}


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import ...")
            if root == "os" or (root == "datetime" and any(
                    a.name in ("datetime", "date") for a in node.names)):
                found.append(f"from {node.module} import {[a.name for a in node.names]}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                found.append(f"{func.id}() at line {node.lineno}")
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS:
                found.append(f".{func.attr}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr not in OS_ALLOWED:
                found.append(f"os.{node.attr} at line {node.lineno}")
    return found


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_does_no_io(path):
    assert violations(path) == []


def test_the_checker_catches_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncio\nimport time\nfrom os import fsync\nimport os\n"
        "from datetime import datetime\n"
        "def f():\n    open('x')\n    datetime.now()\n    time.monotonic()\n    os.write(1, b'')\n"
    )
    found = violations(bad)
    for expected in ("import asyncio", "import time", "from os import", "open()", ".now()",
                     ".monotonic()", "os.write", "from datetime import"):
        assert any(expected in item for item in found), (expected, found)


def test_cython_core_imports_nothing_forbidden():
    pyx = ROOT / "ledger" / "_core.pyx"
    if not pyx.exists():
        pytest.skip("no Cython core in this checkout")
    for number, line in enumerate(pyx.read_text().splitlines(), 1):
        match = re.match(r"\s*(?:c?import|from)\s+([\w.]+)", line)
        if match:
            root = match.group(1).split(".")[0]
            assert root not in FORBIDDEN_MODULES | {"os"}, f"_core.pyx:{number}: {line.strip()}"


def test_importing_core_and_ledger_pulls_in_no_io_module():
    script = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import ledger, switch.core, switch.core.machine, switch.core.codec\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd=ROOT, timeout=60).stdout
    loaded = {name.split(".")[0] for name in json.loads(output)}
    assert "msgspec" in loaded  # the probe saw the import happen
    assert not loaded & FORBIDDEN_MODULES, sorted(loaded & FORBIDDEN_MODULES)
