"""Helpers to run a real switch inside a test's event loop: `start_test_server` and
`onboard`. Real core, ledger, journal file, SQLite directory and sockets — nothing mocked —
on free ports in a directory the caller owns.

For tests and examples only: it must never be imported by the server itself.
"""

from __future__ import annotations

from switch.server.config import load_config
from switch.launcher import SIM_DIRECTORY
from switch.admin.bootstrap import add_currency, add_participant
from switch.app import start_standby, start_switch
from switch.server.server import SwitchServer

CURRENCY = "KES"
LEDGER_ID = 404


async def start_test_server(data_dir: str, **overrides) -> SwitchServer:
    """Start a server on free ports (stream and admin) with the simulators' directory
    rules; keyword arguments override ServerConfig fields (nested ones as dicts)."""
    values = {"data_dir": data_dir, "stream_port": 0, "admin_port": 0,
              "directory": dict(SIM_DIRECTORY)}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    server = await start_switch(load_config(None, environ={}, **values))
    return server


async def start_test_standby(data_dir: str, **overrides) -> SwitchServer:
    """A standby (`role = "standby"`, PostgreSQL journal and store in the overrides) on
    free ports, following its primary; `await switch.app.take_over(standby)` runs it until
    it has taken over."""
    values = {"data_dir": data_dir, "stream_port": 0, "admin_port": 0,
              "directory": dict(SIM_DIRECTORY), "role": "standby"}
    values.update(overrides)
    return await start_standby(load_config(None, environ={}, **values))


async def onboard(server: SwitchServer, names: list[str], *, funding_minor: int = 10**12,
                  rules=None) -> dict[str, tuple[int, str]]:
    """The KES currency (idempotent) and one funded participant per name (banks);
    {name: (participant_id, api_key)}."""
    await add_currency(server, CURRENCY, LEDGER_ID, rules=rules)
    created = {}
    for name in names:
        participant = await add_participant(server, name, "bank", [CURRENCY],
                                            funding_minor=funding_minor)
        created[name] = (participant.participant_id, participant.api_key)
    return created
