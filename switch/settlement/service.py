"""`SettlementService`: settlement as the operator surfaces (admin API, console, CLI), the
participants (HTTP connector) and the RTGS see it, over a running switch.

It reads the core's windows between two steps (the service runs in the switch's event
loop), builds the RTGS instructions of a window (pacs.009), reads an RTGS answer (pacs.002)
into the core event it means or the typed refusal it deserves, streams statements (camt.053,
camt.052, CSV) from the entry log in a worker thread with bounded memory, and reconciles a
participant's list against the log. Every change to the switch is an operator event the
caller submits (the admin service: maker-checker and audit); this service submits nothing
itself. It must never change the core or the ledger, never serve a participant another
participant's entries, and never block the event loop on a window's entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from typing import AsyncIterator, NamedTuple

import msgspec

from switch.admin.ports import SettlementRefused
from switch.admin.types import BilateralRow, PositionRow, WindowDetail, WindowSummary
from switch.core import codec
from switch.core.messages import (
    ReconciliationReport,
    ReconciliationRow,
    SettlementConfirmed,
    SettlementWindowView,
)
from switch.core.results import Result, SettlementModel, WindowState
from switch.settlement import iso, limits
from switch.settlement.config import SettlementConfig
from switch.settlement.entries import EntryLog, read_entries
from switch.settlement.reconcile import reconcile
from switch.settlement.statements import FORMATS, StatementInput, statement_chunks

log = logging.getLogger("ponte.settlement")

RTGS_DIR = "rtgs"


class SettlementRefusal(SettlementRefused):
    """A typed refusal (`result`, `detail`); nothing was changed."""


class RtgsOutcome(NamedTuple):
    """What an RTGS answer asks the switch to do: confirm `event`'s window."""

    event: SettlementConfirmed
    window_id: int


def _state_name(state: WindowState) -> str:
    return state.name.lower()


class SettlementService:
    """See the module docstring. Built by the composition root (switch/app.py)."""

    def __init__(self, server, entries: EntryLog, config: SettlementConfig) -> None:
        self.server = server
        self.entries = entries
        self.config = config
        self.rtgs_dir = os.path.join(entries.directory, RTGS_DIR)
        os.makedirs(self.rtgs_dir, exist_ok=True)
        self._failures: dict[int, str] = self._load_failures()
        self._running = 0

    @property
    def core(self):
        return self.server.core

    # -- views ---------------------------------------------------------------------

    def _names(self) -> dict[int, str]:
        core = self.core
        return {pid: core.participant(pid).name for pid in core.participant_ids()}

    def _model(self, window) -> SettlementModel:
        return self.core.currency(window.currency).settlement_model

    def _summary(self, window) -> WindowSummary:
        model = self.core.currency(window.currency).settlement_model
        deferred = model == SettlementModel.DEFERRED_NET
        closed = window.state != WindowState.OPEN
        pending = window.state == WindowState.PENDING_SETTLEMENT
        return WindowSummary(
            window_id=window.window_id, currency=window.currency,
            settlement_model=model.name.lower(), state=_state_name(window.state),
            opened_at_ns=window.opened_at_ns, closed_at_ns=window.closed_at_ns,
            decided_at_ns=window.decided_at_ns, closed_by=window.closed_by,
            transfers=window.transfers, volume_minor=window.volume_minor,
            fees_minor=window.fees_minor if closed else 0,
            debit_total_minor=-sum(n for n in window.net.values() if n < 0),
            rolled_from=list(window.rolled_from), rolled_transfers=window.rolled_transfers,
            instruction_message_id=(iso.instruction_message_id(window.window_id)
                                    if deferred and window.net and window.state in (
                                        WindowState.PENDING_SETTLEMENT, WindowState.SETTLED)
                                    else ""),
            rtgs_reference=window.rtgs_reference, abort_reason=window.abort_reason,
            rtgs_failure=self._failures.get(window.window_id, "") if pending else "")

    def windows(self, currency: str = "", limit: int = limits.WINDOWS_LISTED_MAX
                ) -> list[WindowSummary]:
        """Retained windows, newest first."""
        found = self.core.settlement_windows(currency)[:max(1, min(limit,
                                                                   limits.WINDOWS_LISTED_MAX))]
        return [self._summary(window) for window in found]

    def _window(self, window_id: int):
        window = self.core.settlement_window(window_id)
        if window is None:
            raise SettlementRefusal(Result.SETTLEMENT_WINDOW_NOT_FOUND, f"window {window_id}")
        return window

    def _positions(self, window) -> tuple[dict[int, int], int]:
        if window.state == WindowState.OPEN:
            return self.core.settlement_live(window.currency)
        return dict(window.net), window.fees_minor

    def window(self, window_id: int) -> WindowDetail:
        window = self._window(window_id)
        names = self._names()
        net, fees = self._positions(window)
        dues = self.core.settlement_dues(window.currency)
        participants = sorted(set(net) | {p for p, _ in window.postings.items()})
        positions = [PositionRow(
            participant_id=pid, name=names.get(pid, str(pid)), net_minor=net.get(pid, 0),
            posted_minor=window.postings[pid].amount_minor if pid in window.postings else 0,
            due_minor=dues.get(pid, 0)) for pid in participants]
        bilateral = [BilateralRow(payer_participant_id=payer, payee_participant_id=payee,
                                  amount_minor=amount)
                     for payer, payee, amount in sorted(window.pairs())]
        summary = self._summary(window)
        if window.state == WindowState.OPEN:
            summary = msgspec.structs.replace(summary, fees_minor=fees)
        return WindowDetail(window=summary, positions=positions, bilateral=bilateral,
                            hub_fees_minor=fees, net_sum_minor=sum(net.values()) + fees)

    def participant_windows(self, participant_id: int, currency: str = "",
                            limit: int = limits.WINDOWS_LISTED_MAX) -> list[SettlementWindowView]:
        """The windows of the currencies the participant holds an account in, newest
        first, each with the participant's own position only."""
        view = self.core.participant(participant_id)
        if view is None:
            return []
        held = set(view.currencies)
        found = []
        for window in self.core.settlement_windows(currency):
            if window.currency not in held:
                continue
            if window.state == WindowState.OPEN:
                net = self.core.settlement_live(window.currency)[0].get(participant_id, 0)
            else:
                net = window.net.get(participant_id, 0)
            found.append(SettlementWindowView(
                window_id=window.window_id, currency=window.currency,
                state=_state_name(window.state), opened_at_ns=window.opened_at_ns,
                closed_at_ns=window.closed_at_ns, decided_at_ns=window.decided_at_ns,
                net_minor=net, rtgs_reference=window.rtgs_reference))
            if len(found) >= min(limit, limits.WINDOWS_LISTED_MAX):
                break
        return found

    # -- RTGS ----------------------------------------------------------------------

    def instructions(self, window_id: int) -> bytes:
        """The pacs.009 of a deferred-net window waiting for (or past) settlement."""
        window = self._window(window_id)
        if window.state not in (WindowState.PENDING_SETTLEMENT, WindowState.SETTLED) or (
                not window.net) or self._model(window) != SettlementModel.DEFERRED_NET:
            raise SettlementRefusal(Result.SETTLEMENT_WINDOW_NOT_PENDING,
                                    f"window {window_id} ({_state_name(window.state)}) has no "
                                    f"deferred-net positions to settle")
        try:
            return iso.instructions_document(
                window_id=window.window_id, currency=window.currency, net=dict(window.net),
                names=self._names(), config=self.config, created_at_ns=window.closed_at_ns)
        except iso.AmountTooLarge as error:
            raise SettlementRefusal(Result.SETTLEMENT_DOCUMENT_INVALID, str(error)) from None

    def rtgs_answer(self, data: bytes) -> RtgsOutcome:
        """What a pacs.002 answer of the RTGS means: the confirmation to submit, or a typed
        refusal (SettlementRefusal) that changes nothing — the document is invalid, names no
        pending window's instructions, is not final yet, or rejects an instruction (the
        window stays PENDING_SETTLEMENT, and the rejection is kept to show)."""
        try:
            answers = iso.read_pacs002(data)
        except iso.DocumentInvalid as error:
            raise SettlementRefusal(Result.SETTLEMENT_DOCUMENT_INVALID, str(error)) from None
        if len(answers) != 1:
            raise SettlementRefusal(Result.SETTLEMENT_DOCUMENT_INVALID,
                                    "one pacs.002 answers one instruction message")
        answer = answers[0]
        window = self._instructed_window(answer.original_message_id)
        expected = {iso.instruction_id(window.window_id, pid, net < 0)
                    for pid, net in window.net.items()}
        verdict = iso.judge(answer, expected)
        if verdict.outcome == "invalid":
            raise SettlementRefusal(Result.SETTLEMENT_DOCUMENT_INVALID, verdict.detail)
        if verdict.outcome == "not_final":
            raise SettlementRefusal(Result.SETTLEMENT_RTGS_NOT_FINAL, verdict.detail)
        if verdict.outcome == "rejected":
            if window.state == WindowState.PENDING_SETTLEMENT:
                self._keep_failure(window.window_id, answer.message_id, verdict.detail, data)
            raise SettlementRefusal(Result.SETTLEMENT_RTGS_REJECTED,
                                    f"window {window.window_id}: {verdict.detail}")
        digest = hashlib.sha256(f"{answer.message_id}\n{answer.original_message_id}".encode()
                                ).hexdigest()[:32]
        try:  # the reference's grammar, checked like every event's
            event = codec.validated(SettlementConfirmed(
                request_id=f"rtgs-{digest}", window_id=window.window_id,
                rtgs_reference=answer.message_id))
        except msgspec.ValidationError:
            raise SettlementRefusal(Result.SETTLEMENT_DOCUMENT_INVALID,
                                    "the RTGS message id is not a usable reference "
                                    "(letters, digits and ./:_+- only)") from None
        return RtgsOutcome(event=event, window_id=window.window_id)

    def _instructed_window(self, message_id: str):
        prefix = iso.MESSAGE_PREFIX
        number = message_id[len(prefix):] if message_id.startswith(prefix) else ""
        window = (self.core.settlement_window(int(number))
                  if number.isdigit() and len(number) <= 18 else None)
        if window is None or not window.net or (
                self._model(window) != SettlementModel.DEFERRED_NET):
            raise SettlementRefusal(Result.SETTLEMENT_RTGS_UNKNOWN_MESSAGE,
                                    f"no instructions {message_id[:35]!r}")
        return window

    def _keep_failure(self, window_id: int, message_id: str, detail: str, data: bytes) -> None:
        """Show the last rejection of a window until it settles; the document is kept beside
        the entry log, so a restart shows it too."""
        self._failures[window_id] = f"{message_id}: {detail}"[:200]
        path = os.path.join(self.rtgs_dir, f"{window_id}.rejected.xml")
        temporary = path + ".tmp"
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)

    def _load_failures(self) -> dict[int, str]:
        failures = {}
        for name in sorted(os.listdir(self.rtgs_dir))[:limits.WINDOWS_LISTED_MAX]:
            head, _, rest = name.partition(".")
            if rest != "rejected.xml" or not head.isdigit():
                continue
            try:
                with open(os.path.join(self.rtgs_dir, name), "rb") as file:
                    answers = iso.read_pacs002(file.read())
                failures[int(head)] = f"{answers[0].message_id}: " + "; ".join(
                    f"{t.instruction_id}: {t.reason or t.status}"
                    for t in answers[0].transactions if t.status in iso.REJECTED_STATUSES
                )[:200]
            except (OSError, iso.DocumentInvalid, IndexError):
                continue
        return failures

    # -- statements and reconciliation ---------------------------------------------------

    def _participant_window(self, participant_id: int, window_id: int):
        """The window, if the participant holds an account in its currency; the same
        refusal otherwise, so a participant learns nothing of other currencies' windows."""
        window = self.core.settlement_window(window_id)
        view = self.core.participant(participant_id)
        if window is None or view is None or window.currency not in view.currencies:
            raise SettlementRefusal(Result.STATEMENT_WINDOW_NOT_FOUND, f"window {window_id}")
        return window

    async def _durable(self) -> None:
        """Until everything the core decided so far is durable: a statement reports only
        what no crash can take back."""
        server = self.server
        target = server.shell.appended_sequence
        deadline = time.monotonic() + limits.DURABLE_WAIT_S_MAX
        while server.journal.durable_sequence < target:
            if time.monotonic() > deadline:
                raise SettlementRefusal(Result.SERVICE_UNAVAILABLE, "the journal is behind")
            await asyncio.sleep(0.001)

    def _statement_input(self, participant_id: int, window, fmt: str) -> StatementInput:
        core = self.core
        view = core.participant(participant_id)
        account_id = core.account_id(participant_id, window.currency)
        now_ns = max(time.time_ns(), core.now_ns)
        if window.state == WindowState.OPEN:
            (account,) = self.server.ledger.lookup_accounts([account_id])
            to_ns, closing = now_ns, account.credits_posted - account.debits_posted
        else:
            to_ns, closing = window.closed_at_ns, window.closing_posted.get(participant_id, 0)
        self.entries.flush()
        source = StatementInput(
            format=fmt, window_id=window.window_id, currency=window.currency,
            participant_id=participant_id, participant_name=view.name, account_id=account_id,
            from_ns=window.opened_at_ns, to_ns=to_ns,
            opening_minor=window.opening_posted.get(participant_id, 0), closing_minor=closing,
            created_at_ns=now_ns, entries_path=self.entries.path(window.window_id),
            entries_end=self.entries.size(window.window_id),
            movements=tuple(m for m in window.movements if m.participant_id == participant_id),
            config=self.config)
        try:  # what could not be written at all is refused before the first byte
            for amount in (source.opening_minor, source.closing_minor,
                           *(m.amount_minor for m in source.movements)):
                iso.iso_amount(abs(amount), window.currency)
        except iso.AmountTooLarge as error:
            raise SettlementRefusal(Result.SETTLEMENT_DOCUMENT_INVALID, str(error)) from None
        return source

    async def statement(self, participant_id: int, window_id: int, fmt: str
                        ) -> tuple[str, str, AsyncIterator[bytes]]:
        """(media type, file name, chunks) of a participant's statement of a window:
        camt053 (a closed window), camt052 (any: an intraday report of the open one), csv.
        Raises SettlementRefusal."""
        if fmt not in FORMATS:
            raise SettlementRefusal(Result.STATEMENT_FORMAT_UNKNOWN, fmt[:20])
        window = self._participant_window(participant_id, window_id)
        if fmt == "camt053" and window.state == WindowState.OPEN:
            raise SettlementRefusal(Result.STATEMENT_WINDOW_OPEN,
                                    f"window {window_id} is open: ask for camt052")
        if self._running >= limits.STATEMENTS_CONCURRENT_MAX:
            raise SettlementRefusal(Result.SERVER_BUSY, "statements being produced")
        await self._durable()
        window = self._participant_window(participant_id, window_id)  # after the wait
        source = self._statement_input(participant_id, window, fmt)
        media_type, suffix = FORMATS[fmt]
        name = f"ponte-{fmt}-w{window_id}-p{participant_id}.{suffix}"
        return media_type, name, self._threaded(lambda: statement_chunks(source))

    async def reconcile(self, participant_id: int, window_id: int,
                        rows: list[ReconciliationRow]) -> ReconciliationReport:
        if len(rows) > limits.RECONCILIATION_ROWS_MAX:
            raise SettlementRefusal(Result.RECONCILIATION_TOO_LARGE,
                                    f"at most {limits.RECONCILIATION_ROWS_MAX} rows")
        self._participant_window(participant_id, window_id)
        if self._running >= limits.STATEMENTS_CONCURRENT_MAX:
            raise SettlementRefusal(Result.SERVER_BUSY, "statements being produced")
        await self._durable()
        self.entries.flush()
        path, end = self.entries.path(window_id), self.entries.size(window_id)
        self._running += 1
        try:
            return await asyncio.to_thread(
                reconcile, window_id, participant_id, rows,
                read_entries(path, participant_id, end))
        finally:
            self._running -= 1

    async def _threaded(self, produce) -> AsyncIterator[bytes]:
        """Run a chunk generator in a worker thread, at most STATEMENT_CHUNKS_AHEAD_MAX
        chunks ahead of the reader; stop it if the reader goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=limits.STATEMENT_CHUNKS_AHEAD_MAX)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while not stop.is_set():
                try:
                    future.result(timeout=0.5)
                    return True
                except TimeoutError:
                    continue
            future.cancel()
            return False

        def work() -> None:
            try:
                for chunk in produce():
                    if not put(chunk):
                        return
                put(done)
            except BaseException as error:  # noqa: BLE001 - handed to the reader
                log.exception("event=statement_failed")
                put(error)

        self._running += 1
        thread = threading.Thread(target=work, name="ponte-statement", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise RuntimeError("the statement could not be completed") from item
                yield item
        finally:
            stop.set()
            while not queue.empty():
                queue.get_nowait()
            self._running -= 1


__all__ = ["RtgsOutcome", "SettlementRefusal", "SettlementService"]
