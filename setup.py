"""Build the Cython ledger core; fall back to the pure-Python twin without a compiler.

The fallback is deliberate: `pip install` must work on a machine with no C toolchain, and
`ledger/__init__.py` says which implementation it loaded (`ponte version` prints it).
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


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


def extensions():
    if os.environ.get("PONTE_PURE_PYTHON") == "1" or not os.path.exists("ledger/_core.pyx"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
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
