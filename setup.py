"""Build the Cython ledger core; fall back to the pure-Python twin without a compiler.

The fallback is deliberate: `pip install` must work on a machine with no C toolchain, and
`ledger/__init__.py` says which implementation it loaded (`ponte version` prints it).
"""

import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CONSTANTS_PXI = os.path.join("ledger", "_constants.pxi")
RENDER_CONSTANTS = ("import sys; from ledger.gen_constants import render_pxi; "
                    "sys.stdout.write(render_pxi())")


class OptionalBuildExt(build_ext):
    """Build extensions, but never fail the install because a compiler is missing."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # noqa: BLE001 - any toolchain failure means "no compiler"
            print(f"ponte: compiled ledger not built ({error}); using the pure-Python twin",
                  file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:  # noqa: BLE001
            print(f"ponte: compiled ledger not built ({error}); using the pure-Python twin",
                  file=sys.stderr)


def write_constants_pxi() -> None:
    """Render ledger/_constants.pxi from ledger/types.py (ledger/gen_constants.py says how).

    In a child interpreter, because importing `ledger` here would map the previous compiled
    core into this process just before the in-place build overwrites it. The file is
    rewritten only when its text changes, so an unchanged tree is not recompiled."""
    path = os.path.join(HERE, CONSTANTS_PXI)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    text = subprocess.run([sys.executable, "-c", RENDER_CONSTANTS], cwd=HERE, env=env,
                          check=True, capture_output=True, text=True, timeout=120).stdout
    if os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            if file.read() == text:
                return
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


def extensions():
    if os.environ.get("PONTE_PURE_PYTHON") == "1" or not os.path.exists("ledger/_core.pyx"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    try:
        write_constants_pxi()
    except (OSError, subprocess.SubprocessError) as error:
        stderr_lines = (getattr(error, "stderr", None) or "").strip().splitlines()
        detail = stderr_lines[-1] if stderr_lines else error  # the exception, not the trace
        print(f"ponte: compiled ledger not built (generating {CONSTANTS_PXI}: {detail}); "
              "using the pure-Python twin", file=sys.stderr)
        return []
    return cythonize(
        ["ledger/_core.pyx"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        annotate=os.environ.get("PONTE_CYTHON_ANNOTATE") == "1",
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
