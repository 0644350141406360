"""An in-process `SwitchPort`: a real `SwitchCore` on a real ledger, without the server.

For the admin tests and for trying the console against a core you drive yourself: operator
events are decided at once (there is no journal here, so nothing is durable), participant
settings live in a dict, and metrics are the trail's counters. The running switch uses
`switch/admin/server_port.py` instead. It must never be used where durability is promised.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from ledger import Ledger, LedgerConfig
from switch.admin.directory_stats import sqlite_counts
from switch.admin.timeline import TransferTrail
from switch.core import CoreConfig, SwitchCore
from switch.core.messages import AdminAnswer


class LocalSwitch:
    def __init__(self, core_config: CoreConfig | None = None,
                 ledger_config: LedgerConfig | None = None, clock_ns=time.time_ns,
                 directory_path: str = ":memory:", ledger_cls=Ledger):
        self.trail = TransferTrail()
        self.ledger = ledger_cls(ledger_config or LedgerConfig(
            accounts_max=4_096, transfers_retained_max=1 << 16, pending_max=1 << 12))
        self.core = SwitchCore(core_config or CoreConfig(
            transfers_retained_max=1 << 14, in_flight_max=1 << 11), self.ledger,
            observer=self.trail)
        self.trail.attach(self.core)
        self.clock_ns = clock_ns
        self.directory_path = directory_path
        self.submitted: list[object] = []  # every operator event, in order (tests read it)
        self._settings: dict[int, dict] = {}
        self.available = True

    # -- the port ----------------------------------------------------------------------

    async def submit(self, event) -> AdminAnswer:
        from switch.admin.ports import SwitchUnavailable

        if not self.available:
            raise SwitchUnavailable("the local switch was marked unavailable")
        self.submitted.append(event)
        (answer,) = self.core.step(event, self.clock_ns())
        assert isinstance(answer, AdminAnswer)
        return answer

    def step(self, event) -> list:
        """Drive a participant event (the tests' traffic)."""
        return self.core.step(event, self.clock_ns())

    async def register_participant(self, participant_id: int, name: str, kind: str,
                                   callback_url: str) -> None:
        self._settings[participant_id] = {"kind": kind, "callback_url": callback_url,
                                          "keys": {}}

    def participant_settings(self, participant_id: int) -> tuple[str, str, list[str]]:
        row = self._settings.get(participant_id)
        if row is None:
            return "", "", []
        return row["kind"], row["callback_url"], sorted(row["keys"])

    async def set_callback_url(self, participant_id: int, callback_url: str) -> bool:
        row = self._settings.get(participant_id)
        if row is None:
            return False
        row["callback_url"] = callback_url
        return True

    async def rotate_api_key(self, participant_id: int) -> tuple[str, str]:
        row = self._settings.setdefault(participant_id, {"kind": "bank", "callback_url": "",
                                                         "keys": {}})
        key_id = f"k{participant_id}-{secrets.token_hex(4)}"
        api_key = secrets.token_urlsafe(32)
        row["keys"] = {key_id: hashlib.sha256(api_key.encode()).digest()}
        return key_id, api_key

    def authenticate(self, api_key: str) -> int | None:
        """Which participant a key belongs to (tests check a rotated key replaces the old)."""
        digest = hashlib.sha256(api_key.encode()).digest()
        for participant_id, row in self._settings.items():
            if any(secrets.compare_digest(digest, known) for known in row["keys"].values()):
                return participant_id
        return None

    def metrics_text(self) -> bytes:
        counters = self.trail.counters()
        return (
            "# HELP ponte_transfers_final_total Transfers that reached a final state.\n"
            "# TYPE ponte_transfers_final_total counter\n"
            f"ponte_transfers_final_total {counters['finals_total']}\n"
        ).encode()

    def counters(self) -> dict:
        return self.trail.counters()

    def health(self) -> dict[str, str]:
        return {"core": "ok", "journal": "none (in-process core)"}

    async def directory_counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        return sqlite_counts(self.directory_path)
