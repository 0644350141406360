"""An in-process `SwitchPort`: a real `SwitchCore` on a real ledger, without the server.

For the admin tests and for trying the console against a core you drive yourself: operator
events are decided at once (there is no journal here, so nothing is durable), participant
settings and directory categories live in dicts, and metrics are the trail's counters. The running switch uses
`switch/console/server_port.py` instead. It must never be used where durability is promised.
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
from switch.directory.config import DirectoryConfig


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
        self.g2p_batches: dict[tuple[int, str], object] = {}  # see g2p_batch_action
        self._settings: dict[int, dict] = {}
        # The directory's category rules (switch/directory/config.py); no directory runs here.
        self.directory_config = DirectoryConfig()
        self._categories: dict[int, str] = {}
        self.available = True

    # -- the port ----------------------------------------------------------------------

    async def submit(self, event) -> AdminAnswer:
        from switch.admin.ports import SwitchUnavailable

        if not self.available:
            raise SwitchUnavailable("the local switch was marked unavailable")
        self.submitted.append(event)
        commands = self.core.step(event, self.clock_ns())
        # A settlement schedule also arms its cut-off timer: no timers run here.
        (answer,) = [command for command in commands if isinstance(command, AdminAnswer)]
        return answer

    def step(self, event) -> list:
        """Drive a participant event (the tests' traffic)."""
        return self.core.step(event, self.clock_ns())

    async def register_participant(self, participant_id: int, name: str, kind: str,
                                   callback_url: str) -> None:
        if kind not in ("bank", "wallet", "government"):
            raise ValueError("kind must be bank, wallet or government")
        row = self._settings.setdefault(participant_id, {"keys": {}, "certificates": set()})
        row.update(kind=kind, callback_url=callback_url)

    def participant_settings(self, participant_id: int) -> tuple[str, str, list[str]]:
        row = self._settings.get(participant_id)
        if row is None:
            return "", "", []
        return row["kind"], row["callback_url"], sorted(row["keys"])

    def _row(self, participant_id: int) -> dict:
        row = self._settings.get(participant_id)
        if row is None:
            raise ValueError("the participant has no connector settings")
        return row

    async def set_callback_url(self, participant_id: int, callback_url: str) -> None:
        self._row(participant_id)["callback_url"] = callback_url

    async def issue_api_key(self, participant_id: int,
                            revoke_others: bool) -> tuple[str, str, int]:
        row = self._row(participant_id)
        key_id = f"k{participant_id}-{secrets.token_hex(4)}"
        api_key = secrets.token_urlsafe(32)
        if revoke_others:
            row["keys"].clear()
        row["keys"][key_id] = hashlib.sha256(api_key.encode()).digest()
        return key_id, api_key, 0  # no connectors here: no live sessions

    def close_sessions(self, participant_id: int, reason: str) -> int:
        return 0  # no connectors here: no live sessions

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None:
        if len(fingerprint) != 32:
            raise ValueError("a certificate fingerprint is 32 bytes (SHA-256)")
        self._row(participant_id)["certificates"].add(fingerprint)

    def certificates(self, participant_id: int) -> set[bytes]:
        """The participant's accepted certificate fingerprints (tests read them)."""
        return set(self._row(participant_id)["certificates"])

    def categories(self) -> tuple[dict[str, object], str]:
        config = self.directory_config
        return dict(config.participant_buckets), config.participant_category_default

    def participant_category(self, participant_id: int) -> str:
        config = self.directory_config
        return self._categories.get(participant_id) or config.participant_categories.get(
            str(participant_id), config.participant_category_default)

    async def g2p_batches(self, limit: int = 200) -> list[dict]:
        return []

    async def g2p_report(self, batch_id: int) -> dict | None:
        return None

    async def g2p_batch_action(self, participant_id: int, transaction_id: str,
                               action: str):
        """The state table of switch/g2p over batches a test puts in `g2p_batches`
        ((programme, transaction id) -> BatchState): no engine runs here."""
        from switch.core.results import Result
        from switch.g2p.types import BATCH_ACTIONS

        state = self.g2p_batches.get((participant_id, transaction_id))
        if state is None:
            return Result.G2P_BATCH_NOT_FOUND
        allowed, target = BATCH_ACTIONS[action]
        if state not in allowed:
            return Result.G2P_BATCH_STATE
        self.g2p_batches[(participant_id, transaction_id)] = target
        return Result.OK

    def set_participant_category(self, participant_id: int, category: str) -> None:
        if category not in self.directory_config.participant_buckets:
            raise ValueError(f"no bucket category {category!r}")
        self._categories[participant_id] = category

    def set_mobilemoney_wallet(self, participant_id: int, settings: dict) -> None:
        """Recorded for the tests: no hub runs in-process here."""
        self.mobilemoney_wallets = {**getattr(self, "mobilemoney_wallets", {}),
                                    participant_id: dict(settings)}

    def check_fspiop_participant(self, participant_id: int, settings: dict) -> None:
        """No hub runs in-process here: an FSP id is checked for uniqueness only."""
        taken = {values["fsp_id"]: pid for pid, values in
                 getattr(self, "fspiop_participants", {}).items()}
        if taken.get(settings["fsp_id"], participant_id) != participant_id:
            raise ValueError(f"FSP id {settings['fsp_id']!r} belongs to another participant")

    def set_fspiop_participant(self, participant_id: int, settings: dict) -> None:
        """Recorded for the tests (see check_fspiop_participant)."""
        self.check_fspiop_participant(participant_id, settings)
        self.fspiop_participants = {**getattr(self, "fspiop_participants", {}),
                                    participant_id: dict(settings)}

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
