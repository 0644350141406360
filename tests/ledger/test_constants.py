"""The compiled core's constants are ledger/types.py's, never a copy that can drift.

`ledger/_constants.pxi` is generated at build time by `ledger/gen_constants.py`; these tests
regenerate it in a temporary directory exactly as setup.py does and require the built file
to say the same, check the generator declares every member of every enum in ledger.types,
and show that a core built before an edit of types.py refuses to load.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ledger.types
from ledger.gen_constants import ENUMS, VALUES, render_pxi
from ledger_helpers import compiled_ledger_cls

ROOT = Path(__file__).resolve().parents[2]
PXI = ROOT / "ledger" / "_constants.pxi"


def generate(package_root: Path) -> str:
    """What setup.py writes for the ledger package under `package_root`."""
    env = dict(os.environ, PYTHONPATH=str(package_root))
    render = "import sys; from ledger.gen_constants import render_pxi; sys.stdout.write(render_pxi())"
    return subprocess.run([sys.executable, "-c", render], cwd=package_root, env=env,
                          check=True, capture_output=True, text=True, timeout=60).stdout


def declared(text: str) -> dict[str, int]:
    """Name -> value of every `cdef enum` member in the rendered text."""
    return {name: int(value) for name, value in
            re.findall(r"^    ([A-Z][A-Z0-9_]*) = (\d+)\b", text, flags=re.MULTILINE)}


def test_built_constants_are_what_types_py_declares_now(tmp_path):
    if not PXI.exists():
        compiled_ledger_cls()  # not built: fails under CI, skips elsewhere, saying why
        pytest.fail(f"the compiled core is built but {PXI} is missing")
    regenerated = tmp_path / "_constants.pxi"
    regenerated.write_text(generate(ROOT))
    assert PXI.read_text() == regenerated.read_text(), (
        "ledger/_constants.pxi is stale: rebuild (python setup.py build_ext --inplace)")


def test_every_shared_enum_member_is_declared_with_its_value():
    constants = declared(render_pxi())
    expected = {prefix + name: int(member)
                for prefix, enum_class in ENUMS
                for name, member in enum_class.__members__.items()}
    expected.update({name: value for name, value, _source in VALUES})
    assert constants == expected
    assert constants["TR_PENDING_TRANSFERS_FULL"] == 60  # the parse really saw the table
    assert constants["T_POST_PENDING_TRANSFER"] == 4


def test_every_enum_of_ledger_types_is_generated():
    """A new enum in types.py is shared by both twins: the generator must declare it."""
    in_types = {value for value in vars(ledger.types).values()
                if isinstance(value, type) and issubclass(value, (enum.IntEnum, enum.IntFlag))
                and value.__module__ == "ledger.types"}
    assert in_types == {enum_class for _prefix, enum_class in ENUMS}


def test_a_core_built_before_an_edit_of_types_py_refuses_to_load(tmp_path):
    compiled_ledger_cls()
    package = tmp_path / "ledger"
    shutil.copytree(ROOT / "ledger", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.html"))
    types_py = package / "types.py"
    source = types_py.read_text()
    last = "    PENDING_TRANSFERS_FULL = 60\n"
    assert source.count(last) == 1
    types_py.write_text(source.replace(last, last + "    A_RESULT_ADDED_LATER = 61\n"))
    probe = ("import ledger, ledger.gen_constants as g\n"
             "print(ledger.IMPLEMENTATION)\n"
             "print(ledger.COMPILED_IMPORT_ERROR)\n"
             "print(('TR_A_RESULT_ADDED_LATER', 61) in [c[:2] for c in g.constants()])\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("PONTE_PURE_PYTHON", None)
    lines = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
                           capture_output=True, text=True, timeout=60).stdout.splitlines()
    implementation, error, regenerated_has_it = lines
    assert implementation == "pure"
    assert "rebuild" in error
    assert regenerated_has_it == "True"
    assert "TR_A_RESULT_ADDED_LATER" in generate(tmp_path)
