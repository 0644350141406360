"""The switch's small HTTP port: health, Prometheus metrics and a read-only participant list.

    GET  /health                       no auth (role, epoch and a standby's lag too)
    GET  /metrics                      no auth (bind it to a private address)
    GET  /admin/participants           participants with their ledger balances, read-only
    GET  /admin/participants/{id}      one

/admin/* needs `Authorization: Bearer <admin token>` (config `admin_token`, else generated
into data_dir/secrets.json): monitoring and reconciliation scripts read positions here.
Nothing on this port changes anything: every change of money, limits, participants, keys,
certificates and callback URLs is a maker-checker proposal of the operator console
(switch/admin, docs/operator-guide.md), audited in its hash-chained log. Errors are
`{"result": code, "name": ..., "detail": ...}`. One request per connection (Connection:
close): its users are few. It must never log a body or a key.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re

import msgspec

from switch.core.results import Result
from switch.server import limits
from switch.admin.bootstrap import participant_summaries

log = logging.getLogger("ponte.server.admin")

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
                500: "Internal Server Error"}
_PARTICIPANT_PATH = re.compile(r"^/admin/participants/(\d{1,8})$")


class _HttpError(Exception):
    def __init__(self, status: int, result: Result, detail: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.result = result
        self.detail = detail


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
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            raise _HttpError(400, Result.MALFORMED_SYNTAX, "bad content-length") from None
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
                "replayed_events": server.replayed_events,
                # the newest snapshot, journal segments, history backlog
                **server.durability(),
                # role, epoch, a standby's replay lag (docs/operations.md)
                **server.replication_status(),
            }), "application/json"
        if path == "/metrics":
            return (200, server.registry.render().encode(),
                    "text/plain; version=0.0.4; charset=utf-8")
        if not path.startswith("/admin/"):
            raise _HttpError(404, Result.VALIDATION_ERROR, "no such path")
        self._authorize(headers)
        if method != "GET":
            raise _HttpError(405, Result.VALIDATION_ERROR,
                             "read-only: changes are proposals of the operator console")
        summaries = participant_summaries(server)
        if path == "/admin/participants":
            return 200, msgspec.json.encode(summaries), "application/json"
        match = _PARTICIPANT_PATH.match(path)
        if match is None:
            raise _HttpError(404, Result.VALIDATION_ERROR, "no such path")
        found = [p for p in summaries if p["participant_id"] == int(match.group(1))]
        if not found:
            raise _HttpError(404, Result.ADMIN_PARTICIPANT_NOT_FOUND)
        return 200, msgspec.json.encode(found[0]), "application/json"


async def start_admin_server(server, host: str, port: int) -> AdminServer:
    admin = AdminServer(server)
    await admin.start(host, port)
    return admin
