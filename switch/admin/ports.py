"""What the operator API needs from the rest of the system, as two small protocols.

`AdminStore` keeps operators, sessions, the audit chain and proposals (SQLite:
`switch/store/admin_embedded.py`; PostgreSQL: `switch/store/admin_postgres.py`).
`SwitchPort` is the running switch as the console sees it: the core's read views, the
ledger's balances, a way to submit an operator event (journaled, then decided), the
participants' connector settings, metrics and health. The admin service depends only on
these, so it runs the same against the server (`switch/console/server_port.py`) and against a
core built in-process (`switch/admin/local.py`).
Nothing behind these protocols may be mutated except through `submit`.
"""

from __future__ import annotations

from typing import AsyncIterator, Protocol

from switch.admin.types import (
    AuditRecord,
    Proposal,
    ProposalState,
    Session,
    User,
)
from switch.core.messages import AdminAnswer
from switch.core.results import Result


class AuditEntry:
    """An audit record before it is chained: the store seals it inside the transaction that
    makes the change it describes, so the change and its record commit together."""

    __slots__ = ("at_ns", "actor", "action", "target", "result", "detail", "client")

    def __init__(self, *, at_ns: int, actor: str, action: str, target: str, result: str,
                 detail: str = "", client: str = ""):
        self.at_ns = at_ns
        self.actor = actor
        self.action = action
        self.target = target
        self.result = result
        self.detail = detail
        self.client = client


class AdminStore(Protocol):
    # operators
    async def get_user(self, username: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def count_users(self) -> int: ...

    async def insert_user(self, user: User, audit: AuditEntry) -> bool:
        """False (and nothing written) if the username exists."""

    async def set_user_disabled(self, username: str, disabled: bool, audit: AuditEntry) -> bool:
        """False if no such user. Disabling also ends the user's sessions."""

    # sessions
    async def insert_session(self, session: Session, sessions_per_user_max: int,
                             audit: AuditEntry) -> None:
        """Store the session (ending the user's oldest beyond the bound) and the login record."""

    async def get_session(self, token_hash: bytes) -> Session | None: ...

    async def touch_session(self, token_hash: bytes, seen_ns: int) -> None: ...

    async def delete_session(self, token_hash: bytes, audit: AuditEntry | None) -> None: ...

    async def delete_expired_sessions(self, now_ns: int, idle_ns: int) -> int: ...

    # audit
    async def append_audit(self, entry: AuditEntry) -> AuditRecord: ...

    async def audit_page(self, before_seq: int | None, limit: int, actor: str = "",
                         action: str = "") -> list[AuditRecord]:
        """Newest first, seq < before_seq when given."""

    def iter_audit(self, batch: int) -> AsyncIterator[AuditRecord]:
        """Every record, oldest first (the verifier)."""

    async def audit_head(self) -> tuple[int, bytes]:
        """(seq, record_hash) of the newest record; (0, 32 zero bytes) when empty."""

    # maker-checker
    async def insert_proposal(self, proposal: Proposal, pending_max: int,
                              audit: AuditEntry) -> bool:
        """False (and nothing written) when `pending_max` proposals are already pending."""

    async def get_proposal(self, proposal_id: str) -> Proposal | None: ...

    async def list_proposals(self, state: ProposalState | None, limit: int) -> list[Proposal]: ...

    async def executed_proposals(self, kinds: tuple[str, ...]) -> list[Proposal]:
        """Every EXECUTED proposal of these kinds, oldest decision first (settings that
        live outside the switch's journal, such as directory categories, are re-applied
        from them at start)."""

    async def decide_proposal(self, proposal: Proposal, expected: ProposalState,
                              audit: AuditEntry) -> bool:
        """Move a proposal from `expected` to `proposal.state` with its decision fields;
        False (and nothing written) if it is no longer in `expected` (another checker won)."""

    async def close(self) -> None: ...


class SwitchPort(Protocol):
    """The running switch, seen from the console. `core` and `ledger` are read only here:
    the console runs in the switch's loop, so a read between two steps is consistent."""

    core: object  # switch.core.SwitchCore
    ledger: object  # ledger.Ledger
    trail: object | None  # switch.admin.timeline.TransferTrail, when the core reports to one

    async def submit(self, event) -> AdminAnswer:
        """Journal an operator event, decide it, and answer once it is durable. Raises
        `SwitchUnavailable` if the switch cannot take it now."""

    # participants' connector settings (the server's credential store) and directory
    # category. Each raises ValueError (with the reason) for a value it refuses.
    async def register_participant(self, participant_id: int, name: str, kind: str,
                                   callback_url: str) -> None:
        """Create or replace the participant's credential row (kind, callback URL)."""

    def participant_settings(self, participant_id: int) -> tuple[str, str, list[str]]:
        """(kind, callback_url, live API key ids); ("", "", []) when it has no row."""

    async def set_callback_url(self, participant_id: int, callback_url: str) -> None: ...

    async def issue_api_key(self, participant_id: int,
                            revoke_others: bool) -> tuple[str, str, int]:
        """Issue a new API key (revoking the others when asked, which closes at once every
        live session they authenticated): (key_id, key, sessions closed), the key returned
        once and stored only as its hash."""

    def close_sessions(self, participant_id: int, reason: str) -> int:
        """Close every live session of the participant now, on every door (its suspension);
        returns how many were closed, for the audit record."""

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None:
        """Accept a TLS client certificate (SHA-256 of its DER) as the participant's."""

    def categories(self) -> tuple[dict[str, object], str]:
        """({category: BucketPolicy}, default category) of the directory."""

    def participant_category(self, participant_id: int) -> str:
        """The participant's directory bucket category now."""

    async def g2p_batches(self, limit: int = 200) -> list[dict]:
        """Summaries of the newest G2P batches (switch/g2p/reports.summary)."""
        ...

    async def g2p_report(self, batch_id: int) -> dict | None:
        """A batch's report written to files: the summary with `files` {csv, json,
        summary}; None for no such batch."""
        ...

    async def g2p_batch_action(self, participant_id: int, transaction_id: str,
                               action: str) -> Result:
        """Pause, resume or cancel a programme's G2P batch: OK, G2P_BATCH_NOT_FOUND,
        G2P_BATCH_STATE, or SERVICE_UNAVAILABLE when the switch runs no G2P engine."""
        ...

    def set_participant_category(self, participant_id: int, category: str) -> None:
        """Put the participant in `category` from its next lookup on (no restart)."""

    def set_mobilemoney_wallet(self, participant_id: int, settings: dict) -> None:
        """Put the participant on the GSMA Mobile Money API hub with these settings
        (MobileMoneyWalletProposal's fields), at once. ValueError when the hub is not
        running or refuses a value."""

    def check_fspiop_participant(self, participant_id: int, settings: dict) -> None:
        """ValueError if the FSPIOP hub would refuse these settings (FspiopParticipantProposal's
        fields: an unusable key, an FSP id another participant has), or is not running."""

    def set_fspiop_participant(self, participant_id: int, settings: dict) -> None:
        """Register the participant on the FSPIOP hub with these settings, at once (its
        next request is verified with the new key). ValueError as `check_fspiop_participant`."""

    # observability
    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of the server's registry."""

    def counters(self) -> dict:
        """Cumulative counters for the live overview (switch/admin/live.py documents them)."""

    def health(self) -> dict[str, str]:
        """Component -> "ok" or a short reason it is not."""

    async def directory_counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """(aliases by type, aliases by participant, open claims) from the directory store."""


class SwitchUnavailable(Exception):
    """The switch is starting, recovering or stopping and took no operator event."""


# -- settlement (switch/settlement, docs/settlement.md) ---------------------------------------


class SettlementRefused(Exception):
    """A settlement request the settlement port refuses with a typed `Result` (`result`,
    `detail`); nothing was changed. The settlement package raises its subclass."""

    def __init__(self, result, detail: str = "") -> None:
        super().__init__(f"{result.name}: {detail}" if detail else result.name)
        self.result = result
        self.detail = detail[:200]


class SettlementPort(Protocol):
    """Settlement as the operator service needs it (switch/settlement/service.py): read
    views and documents; every change is an operator event the service submits."""

    def windows(self, currency: str = "", limit: int = ...) -> list: ...

    def window(self, window_id: int) -> object: ...

    def instructions(self, window_id: int) -> bytes:
        """The window's pacs.009 (raises SettlementRefused)."""

    def rtgs_answer(self, data: bytes):
        """(event, window_id) — the SettlementConfirmed a pacs.002 means (raises
        SettlementRefused: invalid, unknown, not final, rejected)."""

    async def statement(self, participant_id: int, window_id: int, fmt: str):
        """(media type, file name, async iterator of bytes) (raises SettlementRefused)."""
