"""Interoperability with real Mojaloop software: two `@mojaloop/sdk-scheme-adapter`
instances (payer DFSP, payee DFSP) from npm, each with a small backend written here, both
connected to a Ponte switch with JWS signing and validation on.

The adapter is installed once into a cache folder outside the repository
(~/.cache/ponte/npm/<version>, `PONTE_NPM_CACHE` to move it) and reused. It needs Node.js
and the registry the first time; Redis (the adapter's cache) always. Without them the test
fails under CI and skips elsewhere, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import msgspec
import pytest

from connectors.fspiop.app import FspiopParticipant
from connectors.http.client import ConnectionPool
from connectors.http.server import HttpServer, Response
from fspiop_helpers import (
    OTHER_MSISDN,
    PAYEE_MSISDN,
    balances,
    hub,
    pending_total,
    register_payee,
    rsa_pair,
)
from switch.core.messages import SchemeRules
from switch.launcher import free_port

pytestmark = pytest.mark.asyncio

SDK_VERSION = "18.0.2"  # pinned: the newest release on the registry this project reaches
SDK_PACKAGE = "@mojaloop/sdk-scheme-adapter"
CACHE = Path(os.environ.get("PONTE_NPM_CACHE", Path.home() / ".cache" / "ponte" / "npm"))
IN_CI = os.environ.get("CI") == "true"
# The adapter's transitive dependency `grpc` (event-sdk's, loaded but never used by the
# adapter) is a native module with no build for Node 20 and no way to fetch one here: npm's
# `overrides` puts the API-compatible pure-JavaScript @grpc/grpc-js in its place. The
# adapter's own code is as released (docs/fspiop.md).
PACKAGE_JSON = {"name": "ponte-fspiop-interop", "private": True,
                "overrides": {"grpc": "npm:@grpc/grpc-js@1.14.7"}}
REDIS_DBS = (13, 14)  # the adapters' cache: databases of their own (no key prefix option)


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(message + " — CI requires it", pytrace=False)
    pytest.skip(message + " — skipped outside CI")


def sdk_entry() -> Path:
    """The adapter's src/index.js, installed into the cache folder if it is not there."""
    folder = CACHE / SDK_VERSION
    entry = folder / "node_modules" / "@mojaloop" / "sdk-scheme-adapter" / "src" / "index.js"
    if entry.exists():
        return entry
    if shutil.which("npm") is None or shutil.which("node") is None:
        _unavailable("Node.js and npm are needed for the Mojaloop SDK interop test")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps(PACKAGE_JSON))
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
         f"{SDK_PACKAGE}@{SDK_VERSION}"], cwd=folder, capture_output=True, text=True,
        timeout=600)
    if done.returncode != 0 or not entry.exists():
        _unavailable(f"npm install {SDK_PACKAGE}@{SDK_VERSION} failed: {done.stderr[-400:]}")
    return entry


class Backend:
    """The DFSP's core-banking side the adapter calls (its "backend" API)."""

    def __init__(self, parties: dict[str, str]) -> None:
        self.parties = parties
        self.reject_quotes = False
        self.hold_transfers = False
        self.calls: list[tuple[str, str]] = []
        self.server = HttpServer(self.handle)

    async def start(self) -> int:
        await self.server.start("127.0.0.1", 0)
        return self.server.port

    def handle(self, request):
        method, path = request.method.decode(), request.path.decode()
        self.calls.append((method, path))
        if method == "GET" and path.startswith("/parties/"):
            _, _, id_type, id_value = path.split("/")[:4]
            name = self.parties.get(id_value)
            if name is None:
                return Response(404, b'{"statusCode": "3204", "message": "not found"}')
            first, _, last = name.partition(" ")
            return Response(200, json.dumps({
                "idType": id_type, "idValue": id_value, "displayName": name,
                "firstName": first, "lastName": last}).encode())
        if method == "POST" and path == "/quoterequests":
            if self.reject_quotes:
                return Response(500, b'{"statusCode": "5101", "message": "no quote"}')
            quote = json.loads(request.body)
            return Response(200, json.dumps({
                "quoteId": quote["quoteId"], "transactionId": quote["transactionId"],
                "transferAmount": quote["amount"], "transferAmountCurrency": quote["currency"],
                "payeeReceiveAmount": quote["amount"],
                "payeeReceiveAmountCurrency": quote["currency"]}).encode())
        if method == "POST" and path == "/transfers":
            if self.hold_transfers:
                return self._never()
            return Response(200, b'{"homeTransactionId": "home-1"}')
        return Response(200, b"{}")

    async def _never(self) -> Response:
        await asyncio.sleep(25)  # longer than the scheme's payee timeout
        return Response(500, b'{"statusCode": "2001", "message": "too late"}')

    async def close(self) -> None:
        await self.server.close(grace_ms=100)


class Adapter:
    """One sdk-scheme-adapter process."""

    def __init__(self, entry: Path, name: str, *, hub_port: int, backend_port: int,
                 api_key: str, key_path: Path, keys_dir: Path, redis_db: int) -> None:
        self.inbound_port, self.outbound_port = free_port(), free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
            "DFSP_ID": name, "PEER_ENDPOINT": f"127.0.0.1:{hub_port}",
            "BACKEND_ENDPOINT": f"127.0.0.1:{backend_port}",
            "INBOUND_LISTEN_PORT": str(self.inbound_port),
            "OUTBOUND_LISTEN_PORT": str(self.outbound_port),
            "TEST_LISTEN_PORT": str(free_port()), "METRICS_SERVER_LISTEN_PORT": str(free_port()),
            "CACHE_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "JWS_SIGN": "true", "VALIDATE_INBOUND_JWS": "true",
            "JWS_SIGNING_KEY_PATH": str(key_path), "JWS_VERIFICATION_KEYS_DIRECTORY": str(keys_dir),
            "WSO2_BEARER_TOKEN": api_key, "ILP_SECRET": f"{name}-ilp-secret",
            "AUTO_ACCEPT_PARTY": "true", "AUTO_ACCEPT_QUOTES": "true",
            "REQUEST_PROCESSING_TIMEOUT_SECONDS": "15", "EXPIRY_SECONDS": "60",
            "LOG_INDENT": "0", "NODE_ENV": "production",
        }
        self.entry = entry
        self.key_path = key_path
        self.log_path = keys_dir.parent / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(["node", str(self.entry)], env=self.env,
                                        cwd=self.entry.parent.parent, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    async def wait_ready(self, timeout_s: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"adapter exited: {self.log_path.read_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.outbound_port)
                writer.close()
                _, writer = await asyncio.open_connection("127.0.0.1", self.inbound_port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.2)
        raise AssertionError("adapter did not start: " + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


async def _redis_reachable() -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", 6379)
        writer.close()
        return True
    except OSError:
        return False


@pytest.fixture
async def mojaloop(tmp_path):
    """A Ponte switch (FSPIOP hub on, JWS on) and two adapters with their backends."""
    if not await _redis_reachable():
        _unavailable("Redis (the adapters' cache) is not reachable at 127.0.0.1:6379")
    entry = sdk_entry()
    server, banks, hub_public = await hub(tmp_path, rules=SchemeRules(payee_timeout_ms=5_000))
    keys_dir = tmp_path / "jws"
    keys_dir.mkdir()
    (keys_dir / "ponte.pem").write_bytes(hub_public)
    backends, adapters = {}, {}
    try:
        for name in ("payerfsp", "payeefsp"):
            private, public = rsa_pair()
            (tmp_path / f"{name}.key").write_bytes(private)
            (keys_dir / f"{name}.pem").write_bytes(public)
            backends[name] = Backend({PAYEE_MSISDN: "Alice Andrade"} if name == "payeefsp"
                                     else {})
            backend_port = await backends[name].start()
            participant_id, api_key = banks[name]
            adapter = Adapter(entry, name, hub_port=server.fspiop_connector.port,
                              backend_port=backend_port, api_key=api_key,
                              key_path=tmp_path / f"{name}.key", keys_dir=keys_dir,
                              redis_db=REDIS_DBS[len(adapters)])
            adapters[name] = adapter
            server.fspiop_connector.set_participant(FspiopParticipant(
                participant_id=participant_id, fsp_id=name,
                endpoint=f"http://127.0.0.1:{adapter.inbound_port}",
                public_key_pem=public.decode()))
        await register_payee(server, banks["payeefsp"][0], "+" + PAYEE_MSISDN)
        for adapter in adapters.values():
            adapter.start()
        for adapter in adapters.values():
            await adapter.wait_ready()
        yield server, banks, backends, adapters
    finally:
        for adapter in adapters.values():
            adapter.stop()
        for backend in backends.values():
            await backend.close()
        await server.stop(drain_s=0)


async def _outbound_transfer(adapter: Adapter, msisdn: str, amount: str,
                             home_id: str) -> tuple[int, dict]:
    pool = ConnectionPool(f"http://127.0.0.1:{adapter.outbound_port}", timeout_ms=60_000)
    try:
        response = await pool.request(b"POST", b"/transfers", json.dumps({
            "homeTransactionId": home_id,
            "from": {"idType": "MSISDN", "idValue": "254711000001", "displayName": "Bob B"},
            "to": {"idType": "MSISDN", "idValue": msisdn},
            "amountType": "SEND", "currency": "KES", "amount": amount,
            "transactionType": "TRANSFER", "note": "interop"}).encode())
    finally:
        await pool.close()
    return response.status, msgspec.json.decode(response.body)


async def test_transfer_through_the_payer_adapter_completes(mojaloop):
    server, banks, backends, adapters = mojaloop
    before = balances(server, banks)
    status, answer = await _outbound_transfer(adapters["payerfsp"], PAYEE_MSISDN, "25.5",
                                              "home-ok")
    assert status == 200, answer
    assert answer["currentState"] == "COMPLETED", answer
    assert answer["fulfil"]["body"]["transferState"] == "COMMITTED"
    after = balances(server, banks)
    assert after["payerfsp"] == before["payerfsp"] - 2550
    assert after["payeefsp"] == before["payeefsp"] + 2550
    assert pending_total(server) == 0
    assert ("POST", "/transfers") in backends["payeefsp"].calls
    # The same prepare again, byte for byte with its signature, then with another amount:
    # the hub answers the first with the transfer's state (the adapter gets PUT COMMITTED
    # again), the second with 3106 Modified request; nothing moves either time.
    original = answer["prepare"]
    headers = tuple((name.lower().encode(), str(value).encode())
                    for name, value in original["headers"].items()
                    if name.lower() not in ("content-length", "host"))
    body = original["body"].encode() if isinstance(original["body"], str) else \
        json.dumps(original["body"], separators=(",", ":")).encode()
    pool = ConnectionPool(f"http://127.0.0.1:{server.fspiop_connector.port}")
    try:
        again = await pool.request(b"POST", b"/transfers", body, headers)
        assert again.status == 202, again
        changed = json.loads(body)
        changed["amount"]["amount"] = "26"
        from connectors.fspiop.dfsp import Dfsp

        payer = Dfsp("payerfsp", "http://unused", banks["payerfsp"][1],
                     adapters["payerfsp"].key_path.read_bytes())
        changed_body = json.dumps(changed, separators=(",", ":")).encode()
        modified = await pool.request(b"POST", b"/transfers", changed_body, tuple(
            payer.headers("POST", "/transfers", "transfers", changed_body, "payeefsp")))
        assert modified.status == 202, modified
        log_text = ""
        for _ in range(100):
            await asyncio.sleep(0.1)
            log_text = adapters["payerfsp"].log_path.read_text()
            if "3106" in log_text:
                break
        assert "3106" in log_text
    finally:
        await pool.close()
    assert balances(server, banks) == after
    assert pending_total(server) == 0


async def test_payee_not_found(mojaloop):
    server, banks, _, adapters = mojaloop
    before = balances(server, banks)
    status, answer = await _outbound_transfer(adapters["payerfsp"], OTHER_MSISDN, "1",
                                              "home-nf")
    assert status >= 400, answer
    assert "3204" in json.dumps(answer), answer
    assert balances(server, banks) == before


async def test_payee_rejects_the_quote(mojaloop):
    server, banks, backends, adapters = mojaloop
    backends["payeefsp"].reject_quotes = True
    before = balances(server, banks)
    status, answer = await _outbound_transfer(adapters["payerfsp"], PAYEE_MSISDN, "3",
                                              "home-rq")
    assert status >= 400, answer
    assert balances(server, banks) == before
    assert pending_total(server) == 0


async def test_payee_never_fulfils_and_the_core_expires_it(mojaloop):
    server, banks, backends, adapters = mojaloop
    backends["payeefsp"].hold_transfers = True
    before = balances(server, banks)
    status, answer = await _outbound_transfer(adapters["payerfsp"], PAYEE_MSISDN, "4",
                                              "home-exp")
    assert status >= 400, answer
    assert "3303" in json.dumps(answer), answer
    assert balances(server, banks) == before
    assert pending_total(server) == 0
