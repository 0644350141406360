"""No raw national ID is written or forwarded anywhere for ordinary alias payments (issue 10
item 9), on a real switch with the stream and HTTP connectors: once on the file journal and
the embedded store, once on PostgreSQL (journal and store).

Payers resolve and pay NATIONAL_ID aliases over the stream and over HTTP, typed as customers
type them (a country prefix, dashes, spaces), and payees ask a payer for money by its
NATIONAL_ID (request-to-pay, over both). Then every raw ID, in each spelling sent and
digits-only, is looked for in: every file of the data directory (journal, snapshots,
SQLite), every row of every PostgreSQL table and a pg_dump, every log record at DEBUG and
what was printed, the /metrics text, every HTTP callback (path, headers, body) and every
stream frame the switch sent. The stream frames are read off the wire by a relay between
each stream client and the switch.

Positive controls keep the search from passing vacuously: every payment committed, and the
identity token is where the raw ID would otherwise be — the journal, a snapshot, the credit
requests of both transports and (PostgreSQL) the tables.
"""

from __future__ import annotations

import asyncio
import logging
import lzma
import os
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import asyncpg
import msgspec
import pytest

from connectors.http.server import HttpServer, Response
from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from connectors.stream.protocol import (
    FrameReader,
    Reply,
    StreamError,
    server_frame_decoder,
)
from switch.admin.bootstrap import add_participant
from switch.core.messages import (
    AliasRegistration,
    CreditRequest,
    Outbound,
    Party,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    ResolveAnswer,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import RequestToPayState, Result, TransferState
from switch.testing import CURRENCY, onboard, start_test_server

# Ten digits: well formed for the simulators' directory rules (KE, no checksum), and
# unlikely to occur by chance in a dump.
NID_STREAM_PAYEE = "4829175036"
NID_HTTP_PAYEE = "5930286147"
NID_PAYER = "6041397258"  # the payer the requests-to-pay are addressed to
# How the customers typed them; the directory normalises every one to "KE:<digits>".
TYPED = {
    NID_STREAM_PAYEE: ["4829175036", "4829-175-036"],
    NID_HTTP_PAYEE: ["KE:5930286147", "5930 286 147"],
    NID_PAYER: ["6041397258", "KE:6041-397-258"],
}
FILLER_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000077")
AMOUNT_MINOR = 100
WAIT_S = 15.0
# Kept by the database with store = "postgres" (embedded: generated into data_dir).
SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}

_outbound = msgspec.json.Decoder(Outbound)


def needles(national_id: str) -> list[bytes]:
    """Every form the raw ID could be written in: as typed, digits only, canonical, and
    (for bytea printed by pg_dump) the hex of its digits."""
    forms = {*TYPED[national_id], national_id, f"KE:{national_id}", f"KE{national_id}"}
    return sorted(form.encode() for form in forms) + [national_id.encode().hex().encode()]


async def eventually(predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_S}s"
        await asyncio.sleep(0.01)
    return value


def expires_at_ns() -> int:
    return time.time_ns() + 60 * 10**9


class Tap:
    """A TCP relay between one stream client and the switch that keeps every byte the
    switch sent: what the participant received, exactly as it crossed the wire."""

    def __init__(self, switch_port: int) -> None:
        self.switch_port = switch_port
        self.received = bytearray()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, client_reader, client_writer) -> None:
        switch_reader, switch_writer = await asyncio.open_connection(
            "127.0.0.1", self.switch_port)
        self.writers += [client_writer, switch_writer]
        await asyncio.gather(self._pump(client_reader, switch_writer, None),
                             self._pump(switch_reader, client_writer, self.received))

    @staticmethod
    async def _pump(reader, writer, kept: bytearray | None) -> None:
        try:
            while data := await reader.read(65536):
                if kept is not None:
                    kept.extend(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the other side closed: the relay ends with it
        finally:
            writer.close()

    def frames(self) -> list[bytes]:
        """The frames the switch sent, except resolve answers: those echo the alias to the
        payer that asked, exactly as its own customer typed it — no one else's data."""
        reader = FrameReader()
        reader.feed(bytes(self.received))
        kept = []
        while (frame := reader.next_frame()) is not None:
            assert not isinstance(frame, StreamError), frame
            decoded = server_frame_decoder.decode(frame)
            if type(decoded) is Reply and type(decoded.message) is ResolveAnswer:
                continue
            kept.append(bytes(frame))
        return kept

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


class Callbacks:
    """A participant's callback endpoint, a real local HTTP server: keeps every request the
    switch sent (path, query, headers, body) and accepts each credit request through the
    switch's HTTP API (`answer`)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.messages: list = []
        self.answer = None  # async (CreditRequest) -> None
        self.server = HttpServer(self._receive)
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> str:
        await self.server.start("127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.port}/callbacks"

    def _receive(self, request) -> Response:
        headers = b"\n".join(name + b": " + value for name, value in request.headers.items())
        self.received.append(b"\n".join(
            [request.method, request.path, request.query or b"", headers, request.body]))
        message = _outbound.decode(request.body)
        self.messages.append(message)
        if type(message) is CreditRequest and self.answer is not None:
            task = asyncio.get_running_loop().create_task(self.answer(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Response(204)

    def find(self, message_type, **fields):
        return next((m for m in self.messages if type(m) is message_type and all(
            getattr(m, name) == value for name, value in fields.items())), None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.server.close(grace_ms=100)


async def http(port: int, api_key: str, method: str, path: str, body=None
               ) -> tuple[int, bytes]:
    """One call to the switch's HTTP connector, as a participant's back office makes it."""
    def call() -> tuple[int, bytes]:
        data = None if body is None else msgspec.json.encode(body)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=WAIT_S) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    return await asyncio.to_thread(call)


def registration(alias: Party, owner: str) -> AliasRegistration:
    return AliasRegistration(alias_type=alias.alias_type, alias_value=alias.alias_value,
                             account_ref="acc-1", owner_national_id=owner,
                             display_name="Jane Doe")


def national_id(typed: str) -> Party:
    return Party(alias_type="NATIONAL_ID", alias_value=typed)


def transfer(transfer_id: str, payee: Party) -> TransferRequest:
    return TransferRequest(transfer_id=transfer_id, payee=payee, amount_minor=AMOUNT_MINOR,
                           currency=CURRENCY, expires_at_ns=expires_at_ns(),
                           payer_user_ref="customer-1")


def request_to_pay(request_id: str, payer: Party) -> RequestToPay:
    return RequestToPay(request_id=request_id, payer=payer, amount_minor=AMOUNT_MINOR,
                        currency=CURRENCY, expires_at_ns=expires_at_ns(),
                        payee_user_ref="merchant-1")


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_S) as answer:
        return answer.read().decode()


async def pay_by_national_id(data_dir: str, **backends) -> dict:
    """Run the payments on a fresh switch; return what was captured on the wire, the
    /metrics text and the identity tokens (the server is stopped on return)."""
    server = await start_test_server(data_dir, http_enabled=True, http={"port": 0},
                                     snapshot_every_events=10, **backends)
    stream_clients: dict[str, StreamClient] = {}
    taps: dict[str, Tap] = {}
    hooks = {"http_payer": Callbacks(), "http_payee": Callbacks()}
    try:
        ids = await onboard(server, ["stream_payer", "stream_payee"])
        for name, hook in hooks.items():
            created = await add_participant(server, name, "bank", [CURRENCY],
                                            callback_url=await hook.start(),
                                            funding_minor=10**12)
            ids[name] = (created.participant_id, created.api_key)
        http_port = server.http_port

        def call(name: str, method: str, path: str, body=None):
            return http(http_port, ids[name][1], method, path, body)

        async def accept(credit_request: CreditRequest) -> None:
            status, body = await call(
                "http_payee", "PUT", f"/transfers/{credit_request.payer_participant_id}/"
                f"{quote(credit_request.transfer_id, safe='')}", {"accepted": True})
            assert status == 202, body

        hooks["http_payee"].answer = accept
        pushed: dict[str, list] = {}
        for name in ("stream_payer", "stream_payee"):
            taps[name] = Tap(server.stream_port)
            pushed[name] = []
            stream_clients[name] = await StreamClient.connect(
                "127.0.0.1", await taps[name].start(), api_key=ids[name][1],
                on_credit_request=lambda cr: Decision(True), on_push=pushed[name].append)
        payer, payee = stream_clients["stream_payer"], stream_clients["stream_payee"]

        # Each holder registers its customer's ID as an alias (and the filler MSISDN).
        answer = await payee.register_aliases([
            registration(national_id(NID_STREAM_PAYEE), NID_STREAM_PAYEE),
            registration(FILLER_ALIAS, NID_STREAM_PAYEE)])
        assert answer.registered == 2, answer
        answer = await payer.register_aliases([registration(national_id(NID_PAYER),
                                                            NID_PAYER)])
        assert answer.registered == 1, answer
        status, body = await call("http_payee", "POST", "/aliases",
                                  registration(national_id(NID_HTTP_PAYEE), NID_HTTP_PAYEE))
        assert status == 200, body

        # Resolve, then pay: over the stream...
        resolved = await payer.resolve("NATIONAL_ID", TYPED[NID_HTTP_PAYEE][1], "customer-1")
        assert resolved.result is Result.OK and (
            resolved.payee_participant_id == ids["http_payee"][0]), resolved
        for transfer_id, typed in (("s-1", TYPED[NID_STREAM_PAYEE][0]),
                                   ("s-2", TYPED[NID_HTTP_PAYEE][1])):
            outcome = await asyncio.wait_for(
                payer.submit_transfer(transfer(transfer_id, national_id(typed))), WAIT_S)
            assert type(outcome) is TransferOutcome and (
                outcome.state is TransferState.COMMITTED), outcome
        # ... and over HTTP.
        status, body = await call(
            "http_payer", "GET", f"/aliases/NATIONAL_ID/{quote(TYPED[NID_STREAM_PAYEE][1])}"
            "?payer_user_ref=customer-2")
        assert status == 200, body
        for transfer_id, typed in (("h-1", TYPED[NID_STREAM_PAYEE][1]),
                                   ("h-2", TYPED[NID_HTTP_PAYEE][0])):
            status, body = await call("http_payer", "POST", "/transfers",
                                      transfer(transfer_id, national_id(typed)))
            assert status == 202, body
        payer_id = ids["http_payer"][0]
        for transfer_id in ("h-1", "h-2"):
            outcome = await eventually(lambda tid=transfer_id: hooks["http_payer"].find(
                TransferOutcome, payer_participant_id=payer_id, transfer_id=tid),
                f"outcome of {transfer_id}")
            assert outcome.state is TransferState.COMMITTED, outcome

        # Requests-to-pay addressed by the payer's NATIONAL_ID, from an HTTP and a stream
        # payee; the payer approves both over the stream.
        status, body = await call("http_payee", "POST", "/requests-to-pay",
                                  request_to_pay("rtp-h", national_id(TYPED[NID_PAYER][0])))
        assert status == 202, body
        first = await asyncio.wait_for(payee.request_to_pay(
            request_to_pay("rtp-s", national_id(TYPED[NID_PAYER][1]))), WAIT_S)
        assert type(first) is RequestToPayOutcome and first.state is RequestToPayState.OPEN, (
            first)
        for request_id in ("rtp-h", "rtp-s"):
            notice = await eventually(lambda rid=request_id: next((
                m for m in pushed["stream_payer"]
                if type(m) is RequestToPayNotice and m.request_id == rid), None),
                f"notice of {request_id}")
            payer.decide_request_to_pay(RequestToPayDecision(
                payee_participant_id=notice.payee_participant_id, request_id=request_id,
                approved=True, transfer_id=f"pay-{request_id}", expires_at_ns=expires_at_ns()))
        requester_id = ids["http_payee"][0]
        done = await eventually(lambda: hooks["http_payee"].find(
            RequestToPayOutcome, payee_participant_id=requester_id, request_id="rtp-h",
            state=RequestToPayState.APPROVED), "rtp-h approved")
        assert done.transfer_id == "pay-rtp-h"
        await eventually(lambda: any(
            type(m) is RequestToPayOutcome and m.request_id == "rtp-s"
            and m.state is RequestToPayState.APPROVED for m in pushed["stream_payee"]),
            "rtp-s approved")
        for transfer_id in ("pay-rtp-h", "pay-rtp-s"):
            await eventually(lambda tid=transfer_id: any(
                type(m) is TransferOutcome and m.transfer_id == tid
                and m.state is TransferState.COMMITTED for m in pushed["stream_payer"]),
                f"{transfer_id} committed")

        # A snapshot that covers all of it (so the search of snapshots means something):
        # a few payments to an ordinary alias until one is written past this point.
        covered = server.durable_sequence
        for n in range(40):
            await eventually(lambda: not server.snapshots.busy, "the snapshot child")
            if server.snapshots.status.sequence >= covered:
                break
            outcome = await asyncio.wait_for(
                payer.submit_transfer(transfer(f"filler-{n}", FILLER_ALIAS)), WAIT_S)
            assert outcome.state is TransferState.COMMITTED, outcome
        assert server.snapshots.status.sequence >= covered, server.snapshots.status

        metrics = await asyncio.to_thread(metrics_text, server.admin_port)
        tokens = {nid: server.gateway.national_id_token(nid) for nid in TYPED}
    finally:
        for client in stream_clients.values():
            await client.close()
        for tap in taps.values():
            await tap.close()
        for hook in hooks.values():
            await hook.close()
        await server.stop(drain_s=0)
    # Positive controls of the wire: each credit request carried the token, not the ID.
    stream_credit = [m.message for m in map(server_frame_decoder.decode,
                                            taps["stream_payee"].frames())
                     if type(getattr(m, "message", None)) is CreditRequest]
    assert {(c.transfer_id, c.payee_alias.alias_value) for c in stream_credit
            if c.payee_alias is not None and c.payee_alias.alias_type == "NATIONAL_ID"} == {
        ("s-1", tokens[NID_STREAM_PAYEE]), ("h-1", tokens[NID_STREAM_PAYEE])}
    http_credit = [m for m in hooks["http_payee"].messages if type(m) is CreditRequest]
    assert {(c.transfer_id, c.payee_alias.alias_value) for c in http_credit
            if c.payee_alias is not None} == {
        ("s-2", tokens[NID_HTTP_PAYEE]), ("h-2", tokens[NID_HTTP_PAYEE])}
    places = {"metrics": metrics.encode()}
    for name, tap in taps.items():
        places[f"stream frames to {name}"] = b"\n".join(tap.frames())
    for name, hook in hooks.items():
        places[f"callbacks to {name}"] = b"\n\n".join(hook.received)
    return {"places": places, "tokens": tokens, "metrics": metrics}


def data_dir_files(data_dir: str) -> dict[str, bytes]:
    """Every file of the data directory, archived journal segments decompressed."""
    files = {}
    for root, _dirs, names in os.walk(data_dir):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                data = file.read()
            if name.endswith(".xz"):
                data = lzma.decompress(data)
            files[os.path.relpath(path, data_dir)] = data
    return files


async def table_rows(dsn: str) -> dict[str, bytes]:
    """SELECT * of every table of the database, each value as its bytes (bytea as is)."""
    connection = await asyncpg.connect(dsn)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')")
        rows = {}
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            values = []
            for row in await connection.fetch(f"SELECT * FROM {name}"):
                for value in row.values():
                    values.append(bytes(value) if isinstance(value, (bytes, memoryview))
                                  else str(value).encode())
            rows[table["table_name"]] = b"\n".join(values)
        return rows
    finally:
        await connection.close()


async def pg_dump(dsn: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        "pg_dump", "--data-only", "--inserts", dsn,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    return out


def logged(caplog, capsys) -> dict[str, bytes]:
    records = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert any(r.name.startswith("ponte.") for r in caplog.records), "no log was captured"
    return {"logs": (caplog.text + records).encode(),
            "output": "".join(capsys.readouterr()).encode()}


def committed_total(metrics: str) -> float:
    prefix = 'ponte_transfers_total{state="COMMITTED",result="OK"} '
    return sum(float(line[len(prefix):]) for line in metrics.splitlines()
               if line.startswith(prefix))


def assert_nowhere(places: dict[str, bytes]) -> None:
    for nid in TYPED:
        for needle in needles(nid):
            found = [place for place, data in places.items() if needle in data]
            assert not found, f"a raw national ID (as {needle!r}) is in {found}"


def holding(places: dict[str, bytes], token: str) -> list[str]:
    return [place for place, data in places.items() if token.encode() in data]


async def test_no_raw_national_id_anywhere_on_the_file_journal(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    data_dir = str(tmp_path / "data")
    run = await pay_by_national_id(data_dir)
    files = data_dir_files(data_dir)
    tokens = run["tokens"]
    # The journal holds every token (two payees', the payer's from the requests-to-pay),
    # and so does a snapshot: both are really searched below.
    journal = {name: data for name, data in files.items() if name.startswith("journal")}
    snapshots = {name: data for name, data in files.items() if name.endswith(".psnap")}
    assert journal and snapshots, sorted(files)
    for token in tokens.values():
        assert holding(journal, token), "the journal holds no identity token"
    assert holding(snapshots, tokens[NID_STREAM_PAYEE]), "no snapshot holds a token"
    assert committed_total(run["metrics"]) >= 6
    places = {**run["places"], **{f"data_dir/{name}": data for name, data in files.items()},
              **logged(caplog, capsys)}
    assert_nowhere(places)


@pytest.mark.postgres
async def test_no_raw_national_id_anywhere_on_postgresql(tmp_path, postgres_dsn, caplog,
                                                         capsys):
    caplog.set_level(logging.DEBUG)
    data_dir = str(tmp_path / "data")
    run = await pay_by_national_id(data_dir, journal="postgres", store="postgres",
                                   postgres_dsn=postgres_dsn, **SECRETS)
    tables = await table_rows(postgres_dsn)
    dump = await pg_dump(postgres_dsn)
    tokens = run["tokens"]
    # The journal rows (bytea, searched as bytes) and a snapshot row hold the tokens, and
    # the dump holds the journal (bytea as hex) and the directory.
    for token in tokens.values():
        assert any(name.startswith("ledger_journal") for name in holding(tables, token)), (
            "the journal rows hold no identity token")
    assert "switch_snapshot" in holding(tables, tokens[NID_STREAM_PAYEE])
    assert tokens[NID_PAYER].encode().hex().encode() in dump
    assert b"directory_aliases" in dump
    assert committed_total(run["metrics"]) >= 6
    places = {**run["places"], "pg_dump": dump,
              **{f"table {name}": data for name, data in tables.items()},
              **{f"data_dir/{name}": data for name, data in data_dir_files(data_dir).items()},
              **logged(caplog, capsys)}
    assert_nowhere(places)
