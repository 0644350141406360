"""The docs name only what exists: every link and every repository path a page quotes
(`switch/...`, `ledger/...`, `connectors/...`, `bench/...`, `tests/...`, `docs/...`) is in
this repository — the README too. A page describing a module that is gone, or pointing outside the
repository, fails here instead of misleading a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # the README first
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_QUOTED_PATH = re.compile(
    r"`((?:\.\./)+[^`\s]*|(?:switch|ledger|connectors|bench|tests|docs)/[A-Za-z0-9_./-]*"
    r"[A-Za-z0-9_])`")


def _inside_repository(path: Path) -> bool:
    return path == ROOT or ROOT in path.parents


def _exists(path: Path) -> bool:
    # `switch/core/machine` may name a module without its suffix.
    return path.exists() or any(path.parent.glob(path.name + ".*"))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_stay_in_the_repository_and_resolve(page):
    for found in _LINK.finditer(page.read_text()):
        target = found.group(1)
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        resolved = (page.parent / target).resolve()
        assert _inside_repository(resolved), f"{page.name} links outside: {target}"
        assert resolved.exists(), f"{page.name} links to a missing file: {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_quoted_repository_paths_exist(page):
    for found in _QUOTED_PATH.finditer(page.read_text()):
        quoted = found.group(1)
        assert not quoted.startswith("../"), f"{page.name} points outside: {quoted}"
        assert _exists(ROOT / quoted), f"{page.name} quotes a missing path: {quoted}"
