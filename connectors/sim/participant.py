"""One simulated bank or wallet: customers from the population model, their aliases
registered in the directory through the switch, credit requests answered after a
configurable latency (accepting, rejecting at a configured rate, or staying silent so the
transfer expires), payments sent for its customers, returns of some received payments,
and its own books (connectors/sim/books.py).

It talks to the switch only through the SDK (`StreamClient`), like a real participant.
It must never read the switch's state except through messages it receives.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Annotated

import msgspec

from connectors.sim.population import AliasKind, Customer, CustomerKind, Population
from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from connectors.sim.books import Books
from connectors.sim.latency import LatencyHistogram
from connectors.sim.limits import ANSWER_LATENCY_MS_MAX, EXPIRY_S_MAX
from switch.core.messages import (
    CreditRequest,
    Party,
    ReturnRequest,
    TransferOutcome,
    TransferRef,
    TransferRequest,
)
from switch.core.results import TRANSFER_FINAL_STATES, Result, TransferState
from switch.core.messages import AliasRegistration

_FINAL = TRANSFER_FINAL_STATES
_COMMITTED = TransferState.COMMITTED
_STATE_NAMES = {state: state.name for state in TransferState}
CUSTOMER_OPENING_MINOR = 10**12  # deep pockets: the sims test the switch, not poverty


Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class SimOptions(msgspec.Struct, frozen=True, kw_only=True):
    # mean; uniform in [0.5x, 1.5x]
    answer_latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=ANSWER_LATENCY_MS_MAX)] = 0.0
    reject_rate: Share = 0.0  # share of credit requests rejected
    silence_rate: Share = 0.0  # share never answered (they expire at the payee timeout)
    return_rate: Share = 0.0  # share of received payments returned in full
    # payer expiry of each transfer
    expiry_s: Annotated[float, msgspec.Meta(gt=0.0, le=EXPIRY_S_MAX)] = 30.0
    seed: int = 1
    register_national_id: bool = True

    def __post_init__(self) -> None:
        # One roll decides silent, rejected or accepted: the two shares split one interval.
        if self.reject_rate + self.silence_rate > 1.0:
            raise ValueError("reject_rate + silence_rate must be at most 1")


def owner_national_id(customer: Customer) -> str:
    """Persons own their national ID; businesses get a synthetic registration number in
    the same 10-digit format (the directory binds every alias to an owner)."""
    if customer.national_id is not None:
        return customer.national_id
    prefix = {CustomerKind.MERCHANT: "9", CustomerKind.BILLER: "8"}.get(customer.kind, "7")
    return f"{prefix}{int(customer.user_id[1:]) if customer.user_id[1:].isdigit() else 0:09d}"


def directory_alias(kind: str, value: str) -> str:
    """The population writes HANDLE providers with the participant's id ("shop1@bank_a");
    the directory's HANDLE grammar has no underscore in the provider, so simulators use a
    dash there, on registration and on payment alike ("shop1@bank-a")."""
    if kind == "HANDLE":
        name, _, provider = value.rpartition("@")
        return f"{name}@{provider.replace('_', '-')}"
    return value


def registrations(customer: Customer, register_national_id: bool) -> list[AliasRegistration]:
    """The aliases a simulator registers for one customer. RANDOM keys are issued by the
    directory, never chosen by a client, so the population's RANDOM aliases are not
    registered (traffic to them is rerouted, see `Traffic`)."""
    rows = []
    owner = owner_national_id(customer)
    kind = 2 if customer.kind in (CustomerKind.MERCHANT, CustomerKind.BILLER) else 1
    for alias in customer.aliases:
        if alias.kind is AliasKind.RANDOM:
            continue
        rows.append(AliasRegistration(alias_type=alias.kind.value,
                                      alias_value=directory_alias(alias.kind.value, alias.value),
                                      account_ref=customer.user_id, owner_national_id=owner,
                                      display_name=customer.display_name, owner_kind=kind))
    if register_national_id and customer.national_id is not None:
        rows.append(AliasRegistration(alias_type="NATIONAL_ID", alias_value=customer.national_id,
                                      account_ref=customer.user_id, owner_national_id=owner,
                                      display_name=customer.display_name, owner_kind=1))
    return rows


class SimParticipant:
    def __init__(self, name: str, population: Population, options: SimOptions,
                 opening_position_minor: int) -> None:
        self.name = name
        self.population = population
        self.options = options
        self.currency = population.currency
        self.customers = {c.user_id: c for c in population.customers(name)}
        self.books = Books(name, 0, self.currency, opening_position_minor,
                           {user_id: CUSTOMER_OPENING_MINOR for user_id in self.customers})
        self.client: StreamClient | None = None
        self._random = random.Random(f"sim:{name}:{options.seed}")
        self._sequence = 0
        self.latency = LatencyHistogram()
        self.interval_latency = LatencyHistogram()
        self.results: dict[str, int] = {}
        self.sent = 0
        self.done = 0
        self.answered = 0
        self.returns_sent = 0
        self.last_done_at = 0.0  # time.monotonic() of the last final answer
        self._decisions: dict[tuple[int, str], Decision | None] = {}

    @property
    def participant_id(self) -> int:
        return self.books.participant_id

    async def connect(self, host: str, port: int, api_key: str, **options) -> None:
        self.client = await StreamClient.connect(
            host, port, api_key=api_key, client_name=f"sim:{self.name}",
            on_credit_request=self._credit_request, on_push=self._push, **options)
        self.books.participant_id = self.client.participant_id

    async def register_aliases(self) -> dict:
        rows = []
        for customer in self.customers.values():
            rows.extend(registrations(customer, self.options.register_national_id))
        answer = await self.client.register_aliases(rows)
        return {"registered": answer.registered, "existing": answer.existing,
                "rejected": answer.rejected}

    # -- payee side ----------------------------------------------------------------------

    def _credit_request(self, credit_request: CreditRequest):
        key = (credit_request.payer_participant_id, credit_request.transfer_id)
        if key in self._decisions:
            decision = self._decisions[key]  # a re-sent credit request: same answer
            return decision
        customer = credit_request.payee_account_ref
        roll = self._random.random()
        options = self.options
        if customer not in self.customers or credit_request.currency != self.currency:
            decision = Decision(False, "unknown account")
        elif roll < options.silence_rate:
            decision = None  # never answered: the switch expires it
        elif roll < options.silence_rate + options.reject_rate:
            decision = Decision(False, "account blocked")
        else:
            decision = Decision(True)
            self.books.accept_credit(key[0], key[1], customer, credit_request.amount_minor)
        self._decisions[key] = decision
        if decision is None:
            return None
        self.answered += 1
        latency_ms = options.answer_latency_ms
        if latency_ms <= 0:
            return decision
        delay = latency_ms * (0.5 + self._random.random()) / 1000.0
        asyncio.get_running_loop().call_later(delay, self.client.answer, credit_request,
                                              decision)
        return None

    def _push(self, message) -> None:
        if type(message) is not TransferOutcome or message.state not in _FINAL:
            return
        key = (message.payer_participant_id, message.transfer_id)
        if message.payee_participant_id == self.participant_id and (
            message.payer_participant_id != self.participant_id
        ):
            self._decisions.pop(key, None)
            credited = self.books.received_final(key[0], key[1], message.state)
            if credited is not None and self.options.return_rate and (
                self._random.random() < self.options.return_rate
            ):
                self._return(message, credited)

    def _return(self, outcome: TransferOutcome, credited: tuple[str, int]) -> None:
        customer, amount_minor = credited
        if not self.books.can_pay(customer, amount_minor):
            return
        self._sequence += 1
        transfer_id = f"{self.name}-r{self._sequence}"
        request = ReturnRequest(
            transfer_id=transfer_id,
            original=TransferRef(payer_participant_id=outcome.payer_participant_id,
                                 transfer_id=outcome.transfer_id),
            amount_minor=amount_minor,
            expires_at_ns=time.time_ns() + int(self.options.expiry_s * 1e9),
            reason="customer request")
        self.returns_sent += 1
        self._send(request, customer, amount_minor)

    # -- payer side ----------------------------------------------------------------------

    def pay(self, payer_user_id: str, payee_alias_kind: str, payee_alias: str,
            amount_minor: int, transfer_id: str | None = None) -> bool:
        """Send one payment for a customer; False if the customer cannot afford it."""
        if not self.books.can_pay(payer_user_id, amount_minor):
            return False
        if transfer_id is None:
            self._sequence += 1
            transfer_id = f"{self.name}-{self._sequence}"
        request = TransferRequest(
            transfer_id=transfer_id,
            payee=Party(alias_type=payee_alias_kind, alias_value=payee_alias),
            amount_minor=amount_minor, currency=self.currency,
            expires_at_ns=time.time_ns() + int(self.options.expiry_s * 1e9),
            payer_account_ref=payer_user_id, payer_user_ref=payer_user_id)
        self._send(request, payer_user_id, amount_minor)
        return True

    def _send(self, request, customer: str, amount_minor: int) -> None:
        self.books.reserve(request.transfer_id, customer, amount_minor)
        self.sent += 1
        started = time.perf_counter()
        transfer_id = request.transfer_id

        def done(answer, error) -> None:
            if error is not None:
                if not isinstance(error, asyncio.CancelledError):
                    self._count("LOST")
                return
            elapsed = time.perf_counter() - started
            self.last_done_at = time.monotonic()
            self.latency.record(elapsed)
            self.interval_latency.record(elapsed)
            self.done += 1
            if type(answer) is TransferOutcome:
                self.books.sent_final(transfer_id, answer.state, answer.fee_minor)
                self._count(_STATE_NAMES[answer.state])
            else:
                self.books.sent_final(transfer_id, None, 0)
                result = getattr(answer, "result", Result.INTERNAL_SERVER_ERROR)
                self._count(f"REFUSED_{result.name}")

        self.client.submit_transfer(request, on_done=done)

    def _count(self, name: str) -> None:
        self.results[name] = self.results.get(name, 0) + 1

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
