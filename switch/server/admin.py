"""A small admin HTTP surface on its own port, until the operator console replaces it:
health, Prometheus metrics, and participant onboarding (JSON).

    GET  /health                                   no auth
    GET  /metrics                                  no auth (bind it to a private address)
    GET  /admin/participants                       list with ledger positions
    GET  /admin/participants/{id}                  one
    POST /admin/currencies                         {currency, ledger_id, settlement_model:
                                                    "prefunded_rtgs"|"deferred_net", rules?}
    POST /admin/participants                       {name, kind, currencies, callback_url?,
                                                    funding_minor?, net_debit_cap_minor?}
                                                   -> {participant_id, api_key (shown once)}
    POST /admin/participants/{id}/keys             {revoke_others?} -> {api_key}
    POST /admin/participants/{id}/accounts         {currency}: open one more currency
    PUT  /admin/participants/{id}/callback-url     {callback_url}
    POST /admin/participants/{id}/funds            {request_id, currency, amount_minor,
                                                    withdraw?}
    POST /admin/participants/{id}/net-debit-cap    {request_id, currency, cap_minor}
    POST /admin/participants/{id}/certificates     {fingerprint_sha256: hex}

/admin/* needs `Authorization: Bearer <admin token>` (config `admin_token`, else generated
into data_dir/secrets.json). Errors are `{"result": code, "name": ..., "detail": ...}` with
the status the result family implies; a refused request changes nothing. One request per
connection (Connection: close): operators are few. It must never log a body or a key.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re

import msgspec

from switch.core.messages import SchemeRules
from switch.core.results import Result, SettlementModel
from switch.server import limits
from switch.server.onboarding import (
    OnboardingError,
    add_currency,
    add_participant,
    fund,
    issue_key,
    open_account,
    participant_summaries,
    set_net_debit_cap,
)

log = logging.getLogger("ponte.server.admin")

_STATUS_TEXT = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized",
                404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
                413: "Payload Too Large", 422: "Unprocessable Entity",
                500: "Internal Server Error", 503: "Service Unavailable"}
_PARTICIPANT_PATH = re.compile(r"^/admin/participants/(\d{1,8})(/[a-z-]+)?$")


class CurrencyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    currency: str
    ledger_id: int
    settlement_model: str = "prefunded_rtgs"
    rules: SchemeRules | None = None


class ParticipantBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    kind: str
    currencies: list[str]
    callback_url: str = ""
    funding_minor: int = 0
    net_debit_cap_minor: int = 0


class AccountBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    currency: str


class KeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    revoke_others: bool = False


class CallbackBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    callback_url: str


class FundsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    request_id: str
    currency: str
    amount_minor: int
    withdraw: bool = False


class CapBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    request_id: str
    currency: str
    cap_minor: int


class CertificateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    fingerprint_sha256: str


class _HttpError(Exception):
    def __init__(self, status: int, result: Result, detail: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.result = result
        self.detail = detail


def _status_for(result: Result) -> int:
    value = int(result)
    if value in (6202, 6203, 6201):
        return 404
    if value >= 6000:
        return 409
    if result in (Result.SERVICE_UNAVAILABLE, Result.SERVER_BUSY):
        return 503
    return 400


class AdminServer:
    def __init__(self, server) -> None:
        self.server = server
        self._server: asyncio.AbstractServer | None = None
        self._connections = 0
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port,
                                                  limit=limits.ADMIN_HEADER_BYTES_MAX)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= limits.ADMIN_CONNECTIONS_MAX:
            writer.close()
            return
        self._connections += 1
        try:
            status, body, content_type = await asyncio.wait_for(
                self._request(reader), limits.ADMIN_REQUEST_TIMEOUT_S)
        except asyncio.TimeoutError:
            status, body, content_type = 408, b"", "text/plain"
        except _HttpError as error:
            status = error.status
            body = msgspec.json.encode({"result": int(error.result), "name": error.result.name,
                                        "detail": error.detail})
            content_type = "application/json"
        except Exception:  # noqa: BLE001 - answer, log, keep serving
            log.exception("admin_request_failed")
            status, content_type = 500, "application/json"
            body = msgspec.json.encode({"result": int(Result.INTERNAL_SERVER_ERROR),
                                        "name": "INTERNAL_SERVER_ERROR", "detail": ""})
        try:
            head = (f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Error')}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            writer.write(head + body)
            await asyncio.wait_for(writer.drain(), limits.ADMIN_REQUEST_TIMEOUT_S)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._connections -= 1
            writer.close()

    async def _request(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            raise _HttpError(400, Result.MALFORMED_SYNTAX, "bad request head") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            raise _HttpError(400, Result.MALFORMED_SYNTAX, "bad request line") from None
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length < 0 or length > limits.ADMIN_BODY_BYTES_MAX:
            raise _HttpError(413, Result.VALIDATION_ERROR, "body too large")
        body = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0]
        return await self._route(method, path, headers, body)

    def _authorize(self, headers: dict) -> None:
        supplied = headers.get("authorization", "")
        expected = "Bearer " + self.server.admin_token.reveal()
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise _HttpError(401, Result.VALIDATION_ERROR, "admin token required")

    async def _route(self, method: str, path: str, headers: dict, body: bytes
                     ) -> tuple[int, bytes, str]:
        server = self.server
        if path == "/health":
            gateway = server.gateway
            return 200, msgspec.json.encode({
                "status": "failed" if server.failed else "ok",
                "accepting": bool(gateway and gateway.accepting),
                "in_flight": server.core.in_flight_count,
                "inbound_depth": gateway.inbound_depth if gateway else 0,
                "durable_sequence": server.journal.durable_sequence,
                "replayed_events": server.replayed_events,
            }), "application/json"
        if path == "/metrics":
            return (200, server.registry.render().encode(),
                    "text/plain; version=0.0.4; charset=utf-8")
        if not path.startswith("/admin/"):
            raise _HttpError(404, Result.VALIDATION_ERROR, "no such path")
        self._authorize(headers)
        try:
            return await self._admin(method, path, body)
        except OnboardingError as error:
            raise _HttpError(_status_for(error.result), error.result, error.detail) from None
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise _HttpError(400, Result.VALIDATION_ERROR, str(error)[:200]) from None

    async def _admin(self, method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        server = self.server
        json = "application/json"
        if path == "/admin/participants":
            if method == "GET":
                return 200, msgspec.json.encode(participant_summaries(server)), json
            if method != "POST":
                raise _HttpError(405, Result.VALIDATION_ERROR, "GET or POST")
            request = msgspec.json.decode(body, type=ParticipantBody)
            created = await add_participant(
                server, request.name, request.kind, request.currencies,
                callback_url=request.callback_url, funding_minor=request.funding_minor,
                net_debit_cap_minor=request.net_debit_cap_minor)
            return 201, msgspec.json.encode(created), json
        if path == "/admin/currencies":
            if method != "POST":
                raise _HttpError(405, Result.VALIDATION_ERROR, "POST")
            request = msgspec.json.decode(body, type=CurrencyBody)
            models = {"prefunded_rtgs": SettlementModel.PREFUNDED_RTGS,
                      "deferred_net": SettlementModel.DEFERRED_NET}
            if request.settlement_model not in models:
                raise _HttpError(400, Result.VALIDATION_ERROR, "settlement_model")
            await add_currency(server, request.currency, request.ledger_id,
                               models[request.settlement_model], request.rules)
            return 201, msgspec.json.encode({"currency": request.currency}), json
        match = _PARTICIPANT_PATH.match(path)
        if match is None:
            raise _HttpError(404, Result.VALIDATION_ERROR, "no such path")
        participant_id = int(match.group(1))
        action = match.group(2) or ""
        if server.core.participant(participant_id) is None:
            raise _HttpError(404, Result.ADMIN_PARTICIPANT_NOT_FOUND)
        if action == "" and method == "GET":
            found = [p for p in participant_summaries(server)
                     if p["participant_id"] == participant_id]
            return 200, msgspec.json.encode(found[0]), json
        if action == "/keys" and method == "POST":
            request = msgspec.json.decode(body or b"{}", type=KeyBody)
            api_key = await issue_key(server, participant_id,
                                      revoke_others=request.revoke_others)
            return 201, msgspec.json.encode({"participant_id": participant_id,
                                             "api_key": api_key}), json
        if action == "/accounts" and method == "POST":
            request = msgspec.json.decode(body, type=AccountBody)
            await open_account(server, participant_id, request.currency)
            return 201, msgspec.json.encode({"currency": request.currency}), json
        if action == "/callback-url" and method == "PUT":
            request = msgspec.json.decode(body, type=CallbackBody)
            try:
                await server.credentials.set_callback_url(participant_id, request.callback_url)
            except ValueError as error:
                raise _HttpError(400, Result.VALIDATION_ERROR, str(error)) from None
            return 200, msgspec.json.encode({"callback_url": request.callback_url}), json
        if action == "/funds" and method == "POST":
            request = msgspec.json.decode(body, type=FundsBody)
            await fund(server, participant_id, request.currency, request.amount_minor,
                       request_id=request.request_id, withdraw=request.withdraw)
            return 200, msgspec.json.encode({"result": 0}), json
        if action == "/net-debit-cap" and method == "POST":
            request = msgspec.json.decode(body, type=CapBody)
            await set_net_debit_cap(server, participant_id, request.currency,
                                    request.cap_minor, request_id=request.request_id)
            return 200, msgspec.json.encode({"result": 0}), json
        if action == "/certificates" and method == "POST":
            request = msgspec.json.decode(body, type=CertificateBody)
            try:
                fingerprint = bytes.fromhex(request.fingerprint_sha256)
                await server.credentials.add_certificate(participant_id, fingerprint)
            except ValueError as error:
                raise _HttpError(400, Result.VALIDATION_ERROR, str(error)) from None
            return 201, msgspec.json.encode({"result": 0}), json
        raise _HttpError(404, Result.VALIDATION_ERROR, "no such action")


async def start_admin_server(server, host: str, port: int) -> AdminServer:
    admin = AdminServer(server)
    await admin.start(host, port)
    return admin
