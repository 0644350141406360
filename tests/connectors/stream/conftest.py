"""A real switch in the test's loop (journal file, SQLite directory, sockets) with two
funded banks; nothing mocked."""

from __future__ import annotations

import pytest

from switch.testing import onboard, start_test_server


@pytest.fixture
async def switch(tmp_path):
    server = await start_test_server(str(tmp_path))
    participants = await onboard(server, ["bank_a", "bank_b"])
    yield server, participants
    await server.stop(drain_s=0)
