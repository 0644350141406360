"""Ponte's participant SDK: what a bank or wallet embeds to connect to the switch.

Two transports, one shape:

- `connectors.sdk.stream_client.StreamClient` — the stream protocol (persistent TCP or TLS,
  pipelined, the fast lane; docs/stream-protocol.md);
- `connectors.sdk.http_client.HttpClient` — the HTTP/JSON API with callbacks (written by
  the HTTP connector's owner; docs/http-api.md).

Both offer (see `ParticipantClient`):

    client = await StreamClient.connect(host, port, api_key=..., on_credit_request=handler,
                                        on_push=books.on_message)
    answer = await client.resolve("MSISDN", "+254700000001", payer_user_ref="p42")
    outcome = await client.transfer(TransferRequest(transfer_id=..., payee=Party(...),
                                    amount_minor=1000, currency="KES", expires_at_ns=...))
    future = client.submit_transfer(request)        # pipelined: many in flight
    answer = await client.status(payer_participant_id, transfer_id)
    client.request_to_pay(RequestToPay(...)); client.decide_request_to_pay(decision)
    await client.register_aliases([AliasRegistration(...), ...])
    await client.close()

Messages are the switch core's own Structs (switch.core.messages): money in integer minor
units, ids chosen by the sender (`transfer_id` is the idempotency key). A transfer's future
resolves with its FINAL answer: a `TransferOutcome` (COMMITTED, REJECTED or EXPIRED) or a
`Refused` (not recorded: a corrected resend under the same id is a new request).

Credit requests: `on_credit_request(credit_request)` returns a `Decision(accepted, reason)`
(or an awaitable of one, or None and the participant calls `client.answer(...)` later).
Credit the customer only when the COMMITTED outcome arrives (through `on_push`).

Retries keep the transfer id: after SERVER_BUSY / SERVICE_UNAVAILABLE (exponential back-off
with jitter, `RetryPolicy.attempts_max`) and after a dropped connection (reconnect, resend
every open transfer and answer). The switch answers a resend with the first outcome, so a
retry never pays twice. Outcomes may arrive more than once: handle them idempotently.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec

from switch.core.results import Result


class SdkError(Exception):
    """The switch refused the connection, or it was lost and could not be resumed."""


class InvalidRequest(SdkError):
    """A request the client refused to send: it cannot be encoded (an amount past 2**64)
    or breaks a constraint of its message type (an amount of 0, an id too long). Raised
    before anything is written, so the connection and every other request are unaffected;
    `result` is VALIDATION_ERROR, `detail` names the field."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"VALIDATION_ERROR: {detail}")
        self.result = Result.VALIDATION_ERROR
        self.detail = detail


class Decision(msgspec.Struct, frozen=True):
    """A payee's answer to a credit request."""

    accepted: bool
    reason: str = ""


ACCEPT = Decision(True)


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    attempts_max: int = 8  # sends of one request (the first included) on SERVER_BUSY
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    connect_timeout_s: float = 10.0
    call_timeout_s: float = 30.0  # resolve, status, alias registration


class TransferWaiting:
    """What both clients share unchanged: wait for a pipelined transfer's final answer.
    A client that inherits this provides `submit_transfer(request)` returning a future."""

    async def transfer(self, request, timeout_s: float | None = None):
        """Send and wait for the final answer (see submit_transfer)."""
        future = self.submit_transfer(request)
        if timeout_s is None:
            return await future
        # shield: a timeout stops the wait, not the transfer (it may still commit).
        return await asyncio.wait_for(asyncio.shield(future), timeout_s)


class ParticipantClient(Protocol):
    """The shape both transports implement (docstrings on StreamClient)."""

    participant_id: int

    async def resolve(self, alias_type: str, alias_value: str, payer_user_ref: str = ""): ...

    def submit_transfer(self, request): ...

    async def transfer(self, request, timeout_s: float | None = None): ...

    async def status(self, payer_participant_id: int, transfer_id: str): ...

    def request_to_pay(self, request): ...

    def decide_request_to_pay(self, decision) -> None: ...

    async def register_aliases(self, aliases): ...

    async def close(self) -> None: ...


__all__ = ["ACCEPT", "Decision", "InvalidRequest", "ParticipantClient", "RetryPolicy",
           "SdkError", "TransferWaiting"]
