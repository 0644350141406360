"""The in-process bootstrap: currencies, participants (bank or wallet), their accounts,
funding or net debit cap, callback URL and API keys, set up by code running inside the
switch's own process — the tests, `switch.testing`, an embedding program.

Operators never come here: every change an operator makes is a maker-checker proposal of
the console (switch/admin/service.py), and there is no HTTP route to these functions. Every
change to the switch's state is a core admin event submitted through the gateway, so it is
journaled and replayed like a payment; credentials (kind, callback URL, key hashes) go to
the credential store. When the server runs its console, each step is also written to the
operator audit log as actor `system`. Request ids are derived from the operation, so a
retried call is answered the same instead of doing it twice. They must never return an API
key except from the call that issued it, nor log or audit one.
"""

from __future__ import annotations

import msgspec

from switch.core.messages import (
    CurrencyAdded,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    SchemeRules,
)
from switch.core.results import Result, SettlementModel
from switch.server.credentials import CredentialError


class OnboardingError(Exception):
    """An operator request the switch refused; `result` says why."""

    def __init__(self, result: Result, detail: str = "") -> None:
        super().__init__(f"{result.name}: {detail}" if detail else result.name)
        self.result = result
        self.detail = detail


class ParticipantCreated(msgspec.Struct, frozen=True, kw_only=True):
    participant_id: int
    name: str
    kind: str
    currencies: list[str]
    api_key: str  # shown once


def _service(server):
    """The console's service when the server runs one (to audit as `system`), else None."""
    console = getattr(server, "console", None)
    return None if console is None else console.service


async def _admin(server, event, target: str = "", detail: dict | None = None) -> None:
    service = _service(server)
    if service is None:
        answer = await server.gateway.admin(event)
        if answer.result is not Result.OK:
            raise OnboardingError(answer.result, getattr(answer, "detail", ""))
        return
    from switch.admin.types import AdminRefusal

    action = "bootstrap." + type(event).__name__
    try:
        await service.submit_as_system(action, target, event, detail or {})
    except AdminRefusal as refusal:
        result = Result(refusal.core_result) if refusal.core_result else (
            Result.SERVICE_UNAVAILABLE)
        raise OnboardingError(result, refusal.detail) from None


async def _record(server, action: str, target: str, detail: dict) -> None:
    service = _service(server)
    if service is not None:
        await service.record_as_system(action, target, detail)


async def add_currency(server, currency: str, ledger_id: int,
                       settlement_model: SettlementModel = SettlementModel.PREFUNDED_RTGS,
                       rules: SchemeRules | None = None) -> None:
    """Carry a currency (idempotent for the same arguments)."""
    # Admin events are array-like Structs, built directly: the core re-validates every
    # field of an operator request and answers VALIDATION_ERROR, changing nothing.
    event = CurrencyAdded(request_id=f"currency-{currency}", currency=currency,
                          ledger_id=ledger_id, settlement_model=settlement_model,
                          rules=rules or SchemeRules())
    await _admin(server, event, f"currency:{currency}", {"ledger_id": ledger_id})


def next_participant_id(server) -> int:
    known = set(server.core.participant_ids())
    known.update(record.participant_id for record in server.credentials.records())
    return max(known, default=0) + 1


async def add_participant(server, name: str, kind: str, currencies: list[str], *,
                          callback_url: str = "", funding_minor: int = 0,
                          net_debit_cap_minor: int = 0,
                          participant_id: int | None = None) -> ParticipantCreated:
    """Create a participant with accounts in `currencies`, funded (prefunded currencies)
    or capped (deferred-net ones), and issue its first API key."""
    if kind not in ("bank", "wallet", "government"):
        raise OnboardingError(Result.VALIDATION_ERROR, "kind must be bank, wallet or government")
    for currency in currencies:
        # Checked first, so a refusal leaves neither credentials nor a half-made participant.
        if server.core.currency(currency) is None:
            raise OnboardingError(Result.ADMIN_CURRENCY_NOT_FOUND, currency)
    existing = server.core.participant_id_by_name(name)
    if participant_id is None:
        participant_id = existing if existing is not None else next_participant_id(server)
    try:
        # Credentials first: a refused URL or kind changes nothing in the core.
        await server.credentials.put_participant(participant_id, name, kind, callback_url)
    except CredentialError as error:
        raise OnboardingError(Result.VALIDATION_ERROR, str(error)) from None
    target = f"participant:{participant_id}"
    await _record(server, "bootstrap.credentials", target,
                  {"kind": kind, "callback_url": callback_url})
    await _admin(server, ParticipantAdded(request_id=f"participant-{participant_id}",
                                          participant_id=participant_id, name=name), target)
    for currency in currencies:
        await _admin(server, ParticipantAccountOpened(
            request_id=f"account-{participant_id}-{currency}",
            participant_id=participant_id, currency=currency), target)
        state = server.core.currency(currency)
        if state.settlement_model == SettlementModel.PREFUNDED_RTGS and funding_minor:
            await fund(server, participant_id, currency, funding_minor,
                       request_id=f"initial-funding-{participant_id}-{currency}")
        elif state.settlement_model == SettlementModel.DEFERRED_NET and net_debit_cap_minor:
            await set_net_debit_cap(server, participant_id, currency, net_debit_cap_minor,
                                    request_id=f"initial-cap-{participant_id}-{currency}")
    api_key = await server.credentials.issue_key(participant_id)
    await _record(server, "bootstrap.issue_key", target, {"api_key_id": api_key.split("_")[1]})
    return ParticipantCreated(participant_id=participant_id, name=name, kind=kind,
                              currencies=list(currencies), api_key=api_key)


async def open_account(server, participant_id: int, currency: str) -> None:
    """Let an existing participant send and receive in one more currency."""
    await _admin(server, ParticipantAccountOpened(
        request_id=f"account-{participant_id}-{currency}", participant_id=participant_id,
        currency=currency), f"participant:{participant_id}")


async def fund(server, participant_id: int, currency: str, amount_minor: int, *,
               request_id: str, withdraw: bool = False) -> None:
    event_type = FundsWithdrawn if withdraw else FundsDeposited
    await _admin(server, event_type(request_id=request_id, participant_id=participant_id,
                                    currency=currency, amount_minor=amount_minor),
                 f"participant:{participant_id}", {"amount_minor": amount_minor})


async def set_net_debit_cap(server, participant_id: int, currency: str, cap_minor: int, *,
                            request_id: str) -> None:
    await _admin(server, NetDebitCapSet(request_id=request_id, participant_id=participant_id,
                                        currency=currency, cap_minor=cap_minor),
                 f"participant:{participant_id}", {"cap_minor": cap_minor})


async def issue_key(server, participant_id: int, *, revoke_others: bool = False) -> str:
    if server.core.participant(participant_id) is None:
        raise OnboardingError(Result.ADMIN_PARTICIPANT_NOT_FOUND)
    try:
        api_key = await server.credentials.issue_key(participant_id,
                                                     revoke_others=revoke_others)
    except CredentialError as error:
        raise OnboardingError(Result.ADMIN_PARTICIPANT_NOT_FOUND, str(error)) from None
    await _record(server, "bootstrap.issue_key", f"participant:{participant_id}",
                  {"api_key_id": api_key.split("_")[1], "revoke_others": revoke_others})
    return api_key


def participant_summaries(server) -> list[dict]:
    core = server.core
    positions = server.positions()
    result = []
    for participant_id in sorted(core.participant_ids()):
        view = core.participant(participant_id)
        # A standby loads credentials only when it takes over: kind and URL unknown yet.
        credentials = server.credentials
        record = None if credentials is None else credentials.record(participant_id)
        result.append({
            "participant_id": participant_id,
            "name": view.name,
            "kind": record.kind if record else "",
            "status": view.status.name,
            "callback_url": record.callback_url if record else "",
            "accounts": positions.get(participant_id, {}),
        })
    return result
