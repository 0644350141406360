"""`ponte bench mobilemoney [--json] [--quick]`: wallet payments per second and their p50/p99
through the GSMA Mobile Money API, end to end and durable.

Layout on one box, real processes and sockets: the switch (`python -m switch.server`,
file journal with fdatasync, the Mobile Money hub, the console for onboarding through
maker-checker) in one process; the wallets in this one. Each wallet serves its side of the
API (the credits Ponte sends it: 202, then its PUT callback to the hub) and pays other
wallets' customers: POST /transactions/type/transfer with X-Callback-URL. A payment's
latency is from its POST to the hub's PUT callback with its final state: five HTTP
exchanges (payer POST, credit POST to the payee wallet, the payee's callback PUT, and the
final callback PUT to the payer; the account-name check is off here, as the settings
allow). Offered at a fixed rate (`--rate`), open loop; at the end the wallets' books (what
their callbacks said) must equal the switch's ledger, or the command exits non-zero.

It must never measure anything but the public API.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tempfile
import time
import uuid

import click
import msgspec

from connectors.http.client import ConnectionPool
from connectors.http.server import HttpServer, Request, Response
from connectors.sim.latency import LatencyHistogram

CURRENCY = "KES"
LEDGER_ID = 404
FUNDING_MINOR = 10**14
WALLETS = 4
CUSTOMERS_PER_WALLET = 100
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class _Wallet:
    def __init__(self, index: int, participant_id: int, api_key: str, hub_url: str) -> None:
        self.index = index
        self.participant_id = participant_id
        self.api_key = api_key.encode()
        self.hub_url = hub_url
        self.server: HttpServer | None = None
        self.pool: ConnectionPool | None = None
        self.callback_pool: ConnectionPool | None = None
        self.sent: dict[str, int] = {}  # correlation id -> start ns
        self.latency = LatencyHistogram()
        self.committed_out_minor = 0
        self.committed_in_minor = 0
        self.fees_minor = 0
        self.failed = 0
        self.done = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        self.server = HttpServer(self.handle)
        await self.server.start("127.0.0.1", 0)
        self.pool = ConnectionPool(self.hub_url, connections_max=4,
                                   in_flight_per_connection_max=256, timeout_ms=30_000)
        self.callback_pool = ConnectionPool(self.hub_url, connections_max=2,
                                            in_flight_per_connection_max=256,
                                            timeout_ms=30_000)

    def handle(self, request: Request) -> Response:
        path = request.path
        if request.method == b"PUT" and path.startswith(b"/cb/"):
            self._outcome(path[4:].decode(), request.body)
            return Response(204)
        if request.method == b"POST" and path.startswith(b"/transactions/type/"):
            body = _decode(request.body)
            callback = request.headers.get(b"x-callback-url", b"").decode()
            reference = f"w{self.index}-{uuid.uuid4().hex[:12]}"
            amount = body["amount"]
            self.committed_in_minor += _minor(amount)
            answer = _encode({"amount": amount, "currency": CURRENCY, "type": "transfer",
                              "transactionReference": reference,
                              "transactionStatus": "completed",
                              "debitParty": body["debitParty"],
                              "creditParty": body["creditParty"]})
            path_part = "/" + callback.split("/", 3)[3]
            asyncio.get_running_loop().call_soon(self._put, path_part.encode(), answer)
            return Response(202, _encode({"serverCorrelationId": str(uuid.uuid4()),
                                          "status": "pending",
                                          "notificationMethod": "callback"}))
        return Response(404, b'{"errorCategory":"identification","errorCode":"genericError"}')

    def _put(self, path: bytes, body: bytes) -> None:
        future = self.callback_pool.try_send(b"PUT", path, body, ((b"x-api-key", self.api_key),))
        if future is None:
            asyncio.ensure_future(self.callback_pool.request(
                b"PUT", path, body, ((b"x-api-key", self.api_key),)))

    def pay(self, payee_msisdn: str, amount_minor: int) -> None:
        correlation_id = str(uuid.uuid4())
        body = _encode({"amount": _text(amount_minor), "currency": CURRENCY,
                        "debitParty": [{"key": "accountid", "value": f"w{self.index}-c1"}],
                        "creditParty": [{"key": "msisdn", "value": payee_msisdn}]})
        headers = ((b"x-api-key", self.api_key), (b"x-correlationid", correlation_id.encode()),
                   (b"x-callback-url", f"{self.url}/cb/{correlation_id}".encode()),
                   (b"x-content-hash", hashlib.sha256(body).hexdigest().encode()))
        self.sent[correlation_id] = time.perf_counter_ns()
        future = self.pool.try_send(b"POST", b"/transactions/type/transfer", body, headers)
        if future is None:
            future = asyncio.ensure_future(self.pool.request(
                b"POST", b"/transactions/type/transfer", body, headers))
        future.add_done_callback(lambda done, cid=correlation_id: self._accepted(cid, done))

    def _accepted(self, correlation_id: str, done) -> None:
        if done.cancelled() or done.exception() is not None or done.result().status != 202:
            if self.sent.pop(correlation_id, None) is not None:
                self.failed += 1
                self.done += 1

    def _outcome(self, correlation_id: str, body: bytes) -> None:
        started = self.sent.pop(correlation_id, None)
        if started is None:
            return
        self.done += 1
        self.latency.record((time.perf_counter_ns() - started) / 1e9)
        message = _decode(body)
        if message.get("transactionStatus") == "completed":
            self.committed_out_minor += _minor(message["amount"])
            for fee in message.get("fees") or ():
                self.fees_minor += _minor(fee["feeAmount"])
        else:
            self.failed += 1

    async def close(self) -> None:
        await self.pool.close()
        await self.callback_pool.close()
        await self.server.close(1_000)


def _text(amount_minor: int) -> str:
    whole, cents = divmod(amount_minor, 100)
    fraction = f"{cents:02d}".rstrip("0")
    return f"{whole}.{fraction}" if fraction else str(whole)


def _minor(text: str) -> int:
    whole, _, fraction = text.partition(".")
    return int(whole) * 100 + int(fraction.ljust(2, "0") or 0)


def _msisdn(wallet: int, customer: int) -> str:
    return f"+2547{wallet:02d}{customer:06d}"


async def _run(switch, credentials: dict, hub_url: str, seconds: float,
               rate_per_s: int) -> dict:
    wallets = [_Wallet(index, c["participant_id"], c["api_key"], hub_url)
               for index, c in enumerate(credentials.values())]
    for wallet in wallets:
        await wallet.start()
        switch.set_mobilemoney_wallet(wallet.participant_id, wallet.url,
                                      account_check=False)
    # The wallets' customers in the directory (as an operator's directory import would).
    from connectors.sdk.stream_client import StreamClient
    from switch.core.messages import AliasRegistration

    for wallet in wallets:
        client = await StreamClient.connect("127.0.0.1", switch.stream_port,
                                            api_key=wallet.api_key.decode(), reconnect=False)
        await client.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=_msisdn(wallet.index, n),
            account_ref=f"w{wallet.index}-c{n}", owner_national_id=f"{1_000_000_000 + n}",
            display_name="Bench Customer") for n in range(CUSTOMERS_PER_WALLET)])
        await client.close()
    loop = asyncio.get_running_loop()
    started = loop.time()
    count = int(seconds * rate_per_s)
    interval = 1.0 / rate_per_s
    for number in range(count):
        due = started + number * interval
        now = loop.time()
        if due > now + 0.002:
            await asyncio.sleep(due - now)
        payer = wallets[number % len(wallets)]
        payee = wallets[(number + 1 + number // len(wallets)) % len(wallets)]
        if payee is payer:
            payee = wallets[(payer.index + 1) % len(wallets)]
        payer.pay(_msisdn(payee.index, number % CUSTOMERS_PER_WALLET), 100 + number % 900)
    offered_s = loop.time() - started
    deadline = loop.time() + 60
    while any(wallet.sent for wallet in wallets) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    elapsed = loop.time() - started
    await asyncio.sleep(0.5)  # the last credits' books
    latency = LatencyHistogram()
    for wallet in wallets:
        latency.merge(wallet.latency)
    done = sum(wallet.done for wallet in wallets)
    failed = sum(wallet.failed for wallet in wallets)
    positions = switch.positions()
    mismatches = []
    for wallet in wallets:
        account = positions[wallet.participant_id]["accounts"][CURRENCY]
        moved = account["credits_posted"] - account["debits_posted"] - FUNDING_MINOR
        books = wallet.committed_in_minor - wallet.committed_out_minor - wallet.fees_minor
        if moved != books:
            mismatches.append({"participant_id": wallet.participant_id, "switch": moved,
                               "books": books})
    for wallet in wallets:
        await wallet.close()
    return {"transport": "mobilemoney", "offered_per_s": round(count / max(offered_s, 1e-9), 1),
            "payments": count, "done": done, "failed": failed,
            "payments_per_s": round((done - failed) / max(elapsed, 1e-9), 1),
            "p50_ms": round(latency.quantile(0.5) * 1000, 3),
            "p99_ms": round(latency.quantile(0.99) * 1000, 3),
            "success_rate": round((done - failed) / done, 5) if done else 0.0,
            "durable": True, "books_reconcile": not mismatches, "mismatches": mismatches,
            "goal_payments_per_s": 5_000}


def run_mobilemoney(*, seconds: float, rate_per_s: int) -> dict:
    from switch.launcher import SwitchProcess, free_port, onboard_population, sim_server_config

    with tempfile.TemporaryDirectory(prefix="ponte-bench-mm-") as data_dir:
        hub_port = free_port()
        config = sim_server_config(data_dir, console_enabled=True, console_port=free_port(),
                                   mobilemoney_enabled=True, mobilemoney={"port": hub_port})
        switch = SwitchProcess(config).start()
        try:
            credentials = onboard_population(
                switch, [(f"mmwallet{n}", "wallet") for n in range(WALLETS)], CURRENCY,
                LEDGER_ID, FUNDING_MINOR)
            return asyncio.run(_run(switch, credentials, f"http://127.0.0.1:{hub_port}",
                                    seconds, rate_per_s))
        finally:
            switch.stop()


@click.command("mobilemoney")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quick", is_flag=True, help="A few seconds at a low rate (a smoke run).")
@click.option("--seconds", type=click.FloatRange(0.5, 600), default=20.0, show_default=True)
@click.option("--rate", "rate_per_s", type=click.IntRange(1, 50_000), default=5_000,
              show_default=True, help="Payments offered per second, over all wallets.")
def mobilemoney_command(as_json: bool, quick: bool, seconds: float, rate_per_s: int) -> None:
    """Wallet payments per second and p50/p99 through the GSMA Mobile Money API hub, end to
    end (POST to final callback), durable; exits 1 if the books do not reconcile."""
    if quick:
        seconds, rate_per_s = 2.0, 200
    result = run_mobilemoney(seconds=seconds, rate_per_s=rate_per_s)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{result['payments_per_s']:,.0f} payments/s (offered "
                   f"{result['offered_per_s']:,.0f}), p50 {result['p50_ms']} ms, p99 "
                   f"{result['p99_ms']} ms, success {result['success_rate']:.2%}, books "
                   f"{'reconcile' if result['books_reconcile'] else 'DO NOT reconcile'}")
    if not result["books_reconcile"] or not result["done"]:
        sys.exit(1)
