"""Helpers for the G2P tests: a real switch with the G2P connector, participants that
answer credit requests over the stream protocol, and G2P Connect bodies."""

from __future__ import annotations

import asyncio
import time

import msgspec

from connectors.http.client import ConnectionPool
from connectors.http.server import HttpServer, Response
from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.admin.bootstrap import add_currency, add_participant
from switch.testing import CURRENCY, LEDGER_ID, start_test_server

_encode = msgspec.json.Encoder().encode


def header(action: str, total_count: int) -> dict:
    return {"message_id": f"m-{time.time_ns()}", "message_ts": "2026-12-04T10:00:00Z",
            "action": action, "sender_id": "test", "total_count": total_count}


def link_body(transaction_id: str, items: list[tuple[str, str, str]],
              action: str = "link") -> dict:
    """items: (reference_id, national id, fa)."""
    key = {"link": "link_request", "update": "update_request"}[action]
    return {"header": header(action, len(items)), "message": {
        "transaction_id": transaction_id, key: [
            {"reference_id": reference, "timestamp": "2026-12-04T10:00:00Z",
             "id": f"{national_id}@nid", "fa": fa} for reference, national_id, fa in items]}}


def disburse_body(transaction_id: str, rows: list[tuple[str, str, str]]) -> dict:
    """rows: (reference_id, payee_fa, amount)."""
    return {"header": header("disburse", len(rows)), "message": {
        "transaction_id": transaction_id, "disbursements": [
            {"reference_id": reference, "payer_fa": "treasury@gov", "payee_fa": payee,
             "amount": amount} for reference, payee, amount in rows]}}


class G2PClient:
    """HTTP calls to the G2P connector as one participant."""

    def __init__(self, port: int, api_key: str) -> None:
        self.pool = ConnectionPool(f"http://127.0.0.1:{port}", connections_max=2,
                                   timeout_ms=60_000)
        self.api_key = api_key

    async def post(self, path: str, body) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else _encode(body)
        response = await self.pool.request(b"POST", path.encode(), data, headers=(
            (b"authorization", b"Bearer " + self.api_key.encode()),))
        return response.status, msgspec.json.decode(response.body)

    async def get(self, path: str) -> tuple[int, bytes]:
        response = await self.pool.request(b"GET", path.encode(), None, headers=(
            (b"authorization", b"Bearer " + self.api_key.encode()),))
        return response.status, response.body

    async def close(self) -> None:
        await self.pool.close()


class CallbackRecorder:
    """A participant's callback server: records every POST (path, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.server = HttpServer(self._handle, request_body_bytes_max=16 * 1024 * 1024)

    def _handle(self, request) -> Response:
        self.received.append((request.path.decode(), msgspec.json.decode(request.body)))
        return Response(200, b"{}")

    async def start(self) -> str:
        await self.server.start("127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.port}"

    async def close(self) -> None:
        await self.server.close(0)


def payee_decider(credit_request) -> Decision:
    """Accounts named closed-* are closed, reject-* decline, the rest accept."""
    account = credit_request.payee_account_ref
    if account.startswith("closed"):
        return Decision(False, "account closed")
    if account.startswith("reject"):
        return Decision(False, "declined by the customer's bank")
    return Decision(True)


async def until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class World:
    """A switch with the G2P connector, two banks, a wallet and a funded programme."""

    async def start(self, data_dir: str, *, programme_funding_minor: int = 10**9,
                    g2p: dict | None = None, rules=None, decider=None, **overrides) -> World:
        self.server = await start_test_server(
            data_dir, g2p_enabled=True,
            g2p={"port": 0, "funding_probe_s": 0.2, **(g2p or {})}, **overrides)
        server = self.server
        await add_currency(server, CURRENCY, LEDGER_ID, rules=rules)
        self.ids: dict[str, int] = {}
        self.keys: dict[str, str] = {}
        self.recorders: dict[str, CallbackRecorder] = {}
        for name, kind, funding in (("bank-a", "bank", 10**9), ("wallet-b", "wallet", 10**9),
                                    ("bank-c", "bank", 10**9),
                                    ("programme", "government", programme_funding_minor),
                                    ("programme-2", "government", 10**9)):
            recorder = CallbackRecorder()
            url = await recorder.start()
            self.recorders[name] = recorder
            created = await add_participant(server, name, kind, [CURRENCY],
                                            funding_minor=funding, callback_url=url)
            self.ids[name] = created.participant_id
            self.keys[name] = created.api_key
        self.streams = {}
        for name in ("bank-a", "wallet-b", "bank-c"):
            self.streams[name] = await StreamClient.connect(
                "127.0.0.1", server.stream_port, api_key=self.keys[name],
                on_credit_request=decider or payee_decider)
        self.clients = {name: G2PClient(server.g2p_connector.port, key)
                        for name, key in self.keys.items()}
        return self

    def fa(self, name: str, account: str) -> str:
        return f"{account}@{self.ids[name]}"

    def balance(self, name: str) -> int:
        accounts = self.server.positions()[self.ids[name]][CURRENCY]
        return accounts["credits_posted"] - accounts["debits_posted"]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        for stream in self.streams.values():
            await stream.close()
        await self.server.stop(drain_s=0)
        for recorder in self.recorders.values():
            await recorder.close()
