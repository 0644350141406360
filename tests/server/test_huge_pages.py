"""switch/server/huge_pages.py: which mappings are advised, and a real collapse of an
anonymous mapping into huge pages on this kernel (what keeps a snapshot's fork short)."""

from __future__ import annotations

import pytest

from switch.server.huge_pages import (
    HUGE_PAGE_BYTES,
    HugePages,
    anon_huge_bytes,
    anonymous_ranges,
)

MAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 fe:00 123  /usr/bin/python3.11
55d0c1000000-55d0c1800000 rw-p 00000000 00:00 0    [heap]
7f0000100000-7f0000900000 rw-p 00000000 00:00 0
7f0000900000-7f0000a00000 rw-p 00000000 00:00 0
7f0001000000-7f0001400000 r--p 00000000 00:00 0
7f0002000000-7f0002400000 rw-p 00000000 fe:00 77   /data/ledger.mmap
7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0    [stack]
"""


def test_only_anonymous_writable_mappings_are_advised_and_only_their_aligned_part():
    assert anonymous_ranges(MAPS) == [
        (0x55D0C1000000, 0x55D0C1800000),  # the [heap], already aligned
        (0x7F0000200000, 0x7F0000800000),  # 1 MiB in at each end: the aligned middle
        # 0x7f0000900000-...a00000: 1 MiB, no whole huge page; read-only, files, the stack:
        # never.
    ]


def _transparent_huge_pages() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as file:
            text = file.read()
    except OSError:
        return "absent"
    return text[text.index("[") + 1:text.index("]")]


def test_a_touched_anonymous_mapping_is_collapsed_into_huge_pages():
    if _transparent_huge_pages() in ("never", "absent"):
        pytest.skip("this kernel has transparent huge pages disabled")
    block = bytearray(64 << 20)  # glibc maps it on its own
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    before = anon_huge_bytes()
    huge_pages = HugePages()
    collapsed = huge_pages.collapse()
    assert huge_pages.supported is True and huge_pages.runs == 1
    assert collapsed >= len(block) - 2 * HUGE_PAGE_BYTES
    assert anon_huge_bytes() - before >= len(block) - 2 * HUGE_PAGE_BYTES
    assert huge_pages.report()["anon_huge_bytes"] == huge_pages.anon_huge_bytes > 0
    huge_pages.collapse_soon()  # in the background, once at a time
    huge_pages.wait(60)
    assert huge_pages.runs == 2
    assert block[4096] == 1  # the data is the same memory's
