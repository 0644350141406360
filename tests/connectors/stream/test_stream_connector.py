"""The stream connector against a real switch over real sockets: payments, and protocol
abuse — every bad frame gets a typed protocol error and a closed connection, and nothing
else (another participant's connection, the ledger) notices."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from connectors.stream import limits
from connectors.stream.protocol import (
    AliasesReply,
    Hello,
    ProtocolErrorFrame,
    Push,
    RegisterAliases,
    Reply,
    Request,
    StreamError,
    Welcome,
    frame,
    server_frame_decoder,
)
from switch.core.messages import (
    CreditRequest,
    ErrorAnswer,
    Party,
    PayeeAnswer,
    Refused,
    ResolveAnswer,
    ResolveRequest,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import Result, TransferState
from switch.core.messages import AliasRegistration

ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")


class Raw:
    """A hand-rolled stream client: writes any bytes, reads frames."""

    def __init__(self, reader, writer) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, message) -> None:
        self.writer.write(frame(message))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self, timeout_s: float = 5.0):
        header = await asyncio.wait_for(self.reader.readexactly(4), timeout_s)
        body = await asyncio.wait_for(
            self.reader.readexactly(int.from_bytes(header, "big")), timeout_s)
        return server_frame_decoder.decode(body)

    async def closed(self, timeout_s: float = 5.0) -> bool:
        data = await asyncio.wait_for(self.reader.read(), timeout_s)
        return data == b""

    async def hello(self, api_key: str) -> Welcome:
        self.send(Hello(version=limits.PROTOCOL_VERSION, api_key=api_key))
        welcome = await self.frame()
        assert type(welcome) is Welcome
        return welcome

    def close(self) -> None:
        self.writer.close()


async def expect_protocol_error(raw: Raw, error: StreamError) -> None:
    answer = await raw.frame()
    assert type(answer) is ProtocolErrorFrame, answer
    assert answer.error is error
    assert await raw.closed()


def transfer(transfer_id: str, amount_minor: int = 500) -> TransferRequest:
    return TransferRequest(transfer_id=transfer_id, payee=ALIAS, amount_minor=amount_minor,
                           currency="KES", expires_at_ns=time.time_ns() + 30 * 10**9,
                           payer_user_ref="u1")


async def register_payee(port: int, api_key: str) -> Raw:
    payee = await Raw.open(port)
    await payee.hello(api_key)
    payee.send(RegisterAliases(corr=1, aliases=[AliasRegistration(
        alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
        owner_national_id="1234567890", display_name="Jane Doe")]))
    answer = await payee.frame()
    assert type(answer) is AliasesReply and answer.answer.registered == 1
    return payee


def ledger_totals(server) -> tuple[int, int, int, int]:
    return server.ledger.totals()


async def test_a_payment_flows_through_frames(switch):
    server, participants = switch
    port = server.stream_port
    payer_id, payer_key = participants["bank_a"]
    payee_id, payee_key = participants["bank_b"]
    payee = await register_payee(port, payee_key)
    payer = await Raw.open(port)
    assert (await payer.hello(payer_key)).participant_id == payer_id
    payer.send(Request(corr=5, message=ResolveRequest(alias=ALIAS, payer_user_ref="u1")))
    resolved = await payer.frame()
    assert type(resolved) is Reply and resolved.corr == 5
    assert resolved.message.result is Result.OK
    assert resolved.message.payee_participant_id == payee_id
    assert resolved.message.display_name_masked == "J*** D***"
    payer.send(Request(corr=6, message=transfer("t-1")))
    credit = await payee.frame()
    assert type(credit) is Push and type(credit.message) is CreditRequest
    assert credit.message.transfer_id == "t-1" and credit.message.payee_account_ref == "acc-1"
    payee.send(Request(corr=2, message=PayeeAnswer(payer_participant_id=payer_id,
                                                   transfer_id="t-1", accepted=True)))
    for side in (payer, payee):
        outcome = await side.frame()
        assert type(outcome) is Push and type(outcome.message) is TransferOutcome
        assert outcome.message.state is TransferState.COMMITTED
    payer.send(Request(corr=7, message=StatusQuery(payer_participant_id=payer_id,
                                                   transfer_id="t-1")))
    status = await payer.frame()
    assert type(status) is Reply and status.corr == 7
    assert status.message.state is TransferState.COMMITTED
    positions = server.positions()
    assert positions[payee_id]["KES"]["credits_posted"] == 10**12 + 500
    payer.close()
    payee.close()


@pytest.mark.parametrize("case", ["bad_key", "no_key", "wrong_version"])
async def test_failed_handshake_is_typed_and_closes(switch, case):
    server, participants = switch
    raw = await Raw.open(server.stream_port)
    if case == "bad_key":
        raw.send(Hello(version=limits.PROTOCOL_VERSION, api_key="ponte_x_" + "A" * 43))
        await expect_protocol_error(raw, StreamError.AUTHENTICATION_FAILED)
    elif case == "no_key":
        raw.send(Hello(version=limits.PROTOCOL_VERSION))
        await expect_protocol_error(raw, StreamError.AUTHENTICATION_FAILED)
    else:
        raw.send(Hello(version=99, api_key=participants["bank_a"][1]))
        await expect_protocol_error(raw, StreamError.VERSION_UNSUPPORTED)
    assert not server.gateway.attached(participants["bank_a"][0])


async def test_request_before_hello_is_refused(switch):
    server, _ = switch
    raw = await Raw.open(server.stream_port)
    raw.send(Request(corr=1, message=transfer("t-early")))
    await expect_protocol_error(raw, StreamError.HANDSHAKE_REQUIRED)
    assert server.core.transfers_retained == 0


async def test_silent_client_is_cut_at_the_handshake_timeout(switch):
    server, _ = switch
    server.stream_server.handshake_timeout_s = 0.2
    raw = await Raw.open(server.stream_port)
    await expect_protocol_error(raw, StreamError.HANDSHAKE_TIMEOUT)


async def test_second_hello_is_refused(switch):
    server, participants = switch
    raw = await Raw.open(server.stream_port)
    await raw.hello(participants["bank_a"][1])
    raw.send(Hello(version=limits.PROTOCOL_VERSION, api_key=participants["bank_b"][1]))
    await expect_protocol_error(raw, StreamError.HANDSHAKE_REPEATED)


@pytest.mark.parametrize("case", ["oversized", "empty", "garbage", "not_a_map",
                                  "unknown_frame", "unknown_message"])
async def test_abuse_closes_only_the_offender(switch, case):
    server, participants = switch
    port = server.stream_port
    payee = await register_payee(port, participants["bank_b"][1])
    offender = await Raw.open(port)
    await offender.hello(participants["bank_a"][1])
    totals_before = ledger_totals(server)
    if case == "oversized":
        # Only the header: the server must refuse before any of the body is sent.
        offender.send_bytes((limits.FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
        expected = StreamError.FRAME_TOO_LARGE
    elif case == "empty":
        offender.send_bytes(b"\0\0\0\0")
        expected = StreamError.FRAME_EMPTY
    elif case == "garbage":
        offender.send_bytes(b"\0\0\0\x03\xc1\xc1\xc1")  # 0xc1 is never used in msgpack
        expected = StreamError.MALFORMED_FRAME
    elif case == "not_a_map":
        body = msgspec.msgpack.encode([1, 2, 3])
        offender.send_bytes(len(body).to_bytes(4, "big") + body)
        expected = StreamError.MALFORMED_FRAME
    elif case == "unknown_frame":
        body = msgspec.msgpack.encode({"type": "launch_missiles", "corr": 1})
        offender.send_bytes(len(body).to_bytes(4, "big") + body)
        expected = StreamError.UNKNOWN_MESSAGE
    else:
        body = msgspec.msgpack.encode({"type": "request", "corr": 1,
                                       "message": {"type": "mint_money", "amount": 5}})
        offender.send_bytes(len(body).to_bytes(4, "big") + body)
        expected = StreamError.UNKNOWN_MESSAGE
    await expect_protocol_error(offender, expected)
    assert ledger_totals(server) == totals_before
    # The other participant's connection is untouched and still served.
    payee.send(Request(corr=9, message=ResolveRequest(alias=ALIAS, payer_user_ref="u2")))
    answer = await payee.frame()
    assert type(answer) is Reply and answer.corr == 9
    assert type(answer.message) is ResolveAnswer and answer.message.result is Result.OK
    # The offender may come back on a new connection.
    again = await Raw.open(port)
    await again.hello(participants["bank_a"][1])
    assert server.stream_server.protocol_errors[expected.name] >= 1
    again.close()
    payee.close()


async def test_constraint_violation_answers_the_request_and_keeps_the_connection(switch):
    server, participants = switch
    payer = await Raw.open(server.stream_port)
    payer_id = (await payer.hello(participants["bank_a"][1])).participant_id
    totals_before = ledger_totals(server)
    bad = msgspec.msgpack.encode({"type": "request", "corr": 41, "message": {
        "type": "transfer", "transfer_id": "bad-1", "payee": msgspec.to_builtins(ALIAS),
        "amount_minor": 0, "currency": "KES", "expires_at_ns": time.time_ns() + 10**10}})
    payer.send_bytes(len(bad).to_bytes(4, "big") + bad)
    answer = await payer.frame()
    assert type(answer) is Reply and answer.corr == 41
    assert type(answer.message) is ErrorAnswer
    assert answer.message.result is Result.VALIDATION_ERROR
    assert "amount_minor" in answer.message.detail
    # Nothing was recorded, and the connection still works.
    payer.send(Request(corr=42, message=StatusQuery(payer_participant_id=payer_id,
                                                    transfer_id="bad-1")))
    status = await payer.frame()
    assert type(status) is Reply and status.corr == 42
    assert type(status.message) is Refused
    assert status.message.result is Result.TRANSFER_NOT_FOUND
    assert ledger_totals(server) == totals_before
    payer.close()


async def test_window_bounds_requests_waiting_to_be_sequenced(switch):
    server, participants = switch
    server.stream_server.window_max = 4
    payee = await register_payee(server.stream_port, participants["bank_b"][1])
    payer = await Raw.open(server.stream_port)
    await payer.hello(participants["bank_a"][1])
    count = 60
    payer.send_bytes(b"".join(frame(Request(corr=i, message=transfer(f"w-{i}")))
                              for i in range(count)))
    credit_requests = 0
    while credit_requests < count:
        pushed = await payee.frame()
        if type(pushed) is Push and type(pushed.message) is CreditRequest:
            credit_requests += 1
    connection = next(c for c in server.stream_server.connections
                      if c.participant_id == participants["bank_a"][0])
    assert connection.window_peak == 4  # reached, never passed
    assert server.core.in_flight_count == count
    payer.close()
    payee.close()


async def test_sdk_duplicate_sends_are_harmless(switch):
    server, participants = switch
    port = server.stream_port
    payer_id, payer_key = participants["bank_a"]
    payee_id, payee_key = participants["bank_b"]
    answered = []

    def on_credit(credit_request):
        answered.append(credit_request.transfer_id)
        return Decision(True)

    payee = await StreamClient.connect("127.0.0.1", port, api_key=payee_key,
                                       on_credit_request=on_credit)
    await payee.register_aliases([AliasRegistration(
        alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
        owner_national_id="1234567890", display_name="Jane Doe")])
    payer = await StreamClient.connect("127.0.0.1", port, api_key=payer_key)
    request = transfer("dup-1", amount_minor=700)
    first = await payer.transfer(request, timeout_s=10)
    second = await payer.transfer(request, timeout_s=10)
    assert first == second
    assert first.state is TransferState.COMMITTED
    assert answered == ["dup-1"]  # the payee was asked once
    account = server.positions()[payer_id]["KES"]
    assert account["debits_posted"] == 700  # debited once
    changed = msgspec.structs.replace(request, amount_minor=701)
    refused = await payer.transfer(changed, timeout_s=10)
    assert type(refused) is Refused
    assert refused.result is Result.EXISTS_WITH_DIFFERENT_AMOUNT
    assert server.positions()[payer_id]["KES"]["debits_posted"] == 700
    assert server.positions()[payee_id]["KES"]["credits_posted"] == 10**12 + 700
    await payer.close()
    await payee.close()


async def test_answering_a_transfer_one_was_never_sent_is_an_error_not_a_decision(switch):
    server, participants = switch
    port = server.stream_port
    payee = await register_payee(port, participants["bank_b"][1])
    payer = await Raw.open(port)
    payer_id = (await payer.hello(participants["bank_a"][1])).participant_id
    payer.send(Request(corr=1, message=transfer("t-x")))
    credit = await payee.frame()
    assert type(credit.message) is CreditRequest
    # The payer tries to accept its own transfer in the payee's place.
    payer.send(Request(corr=2, message=PayeeAnswer(payer_participant_id=payer_id,
                                                   transfer_id="t-x", accepted=True)))
    error = await payer.frame()
    assert type(error) is Push and type(error.message) is ErrorAnswer
    assert error.message.result is Result.TRANSFER_NOT_FOUND
    # An answer for a transfer nobody knows is answered, and changes nothing.
    payee.send(Request(corr=3, message=PayeeAnswer(payer_participant_id=payer_id,
                                                   transfer_id="ghost", accepted=True)))
    answer = await payee.frame()
    assert type(answer.message) is Refused and answer.message.result is Result.TRANSFER_NOT_FOUND
    assert server.core.in_flight_count == 1  # t-x still waits for its real payee
    payer.close()
    payee.close()


def nesting_bomb(size_bytes: int, shape: str) -> bytes:
    """A msgpack body of `size_bytes` that is almost all nesting: bare arrays, or arrays
    inside a map before its `type` tag (the typed decoder skips them looking for it)."""
    if shape == "arrays":
        return b"\x91" * (size_bytes - 1) + b"\xc0"
    head = b"\x82\xa1x"
    tail = b"\xa4type\xa5hello"
    return head + b"\x91" * (size_bytes - len(head) - len(tail) - 1) + b"\xc0" + tail


@pytest.mark.parametrize("stage", ["before_hello", "after_hello"])
@pytest.mark.parametrize("shape", ["arrays", "map"])
async def test_nesting_bomb_is_a_malformed_frame_without_a_traceback(switch, stage, shape,
                                                                     caplog):
    server, participants = switch
    port = server.stream_port
    payee = await register_payee(port, participants["bank_b"][1])
    offender = await Raw.open(port)
    if stage == "after_hello":
        await offender.hello(participants["bank_a"][1])
        size_bytes = limits.FRAME_BYTES_MAX
    else:
        # Before hello a frame may be no larger than the largest hello: a bomb that fits.
        size_bytes = limits.HELLO_FRAME_BYTES_MAX
    totals_before = ledger_totals(server)
    caplog.clear()
    with caplog.at_level("DEBUG"):
        for _ in range(3):  # the offender comes back and tries again
            body = nesting_bomb(size_bytes, shape)
            offender.send_bytes(len(body).to_bytes(4, "big") + body)
            await expect_protocol_error(offender, StreamError.MALFORMED_FRAME)
            offender = await Raw.open(port)
            if stage == "after_hello":
                await offender.hello(participants["bank_a"][1])
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert "Traceback" not in caplog.text
    assert ledger_totals(server) == totals_before
    # The other participant's connection is untouched and still served.
    payee.send(Request(corr=9, message=ResolveRequest(alias=ALIAS, payer_user_ref="u2")))
    answer = await payee.frame()
    assert type(answer) is Reply and answer.corr == 9
    assert type(answer.message) is ResolveAnswer and answer.message.result is Result.OK
    offender.close()
    payee.close()


async def test_before_hello_a_frame_may_be_no_larger_than_a_hello(switch):
    """An unauthenticated connection cannot make the server buffer a 1 MiB frame: past the
    largest possible Hello the announced length alone is FRAME_TOO_LARGE. After the
    handshake the full FRAME_BYTES_MAX applies."""
    server, participants = switch
    port = server.stream_port
    raw = await Raw.open(port)
    raw.send_bytes((limits.HELLO_FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
    await expect_protocol_error(raw, StreamError.FRAME_TOO_LARGE)
    raw = await Raw.open(port)
    raw.send_bytes((limits.FRAME_BYTES_MAX).to_bytes(4, "big"))
    await expect_protocol_error(raw, StreamError.FRAME_TOO_LARGE)
    # A Hello of the largest size is read (and refused only for its unknown key).
    raw = await Raw.open(port)
    raw.send(Hello(version=limits.PROTOCOL_VERSION,
                   api_key="\U0001f512" * limits.HELLO_API_KEY_LENGTH_MAX,
                   client_name="\U0001f512" * limits.HELLO_CLIENT_NAME_LENGTH_MAX))
    await expect_protocol_error(raw, StreamError.AUTHENTICATION_FAILED)
    # After the handshake a frame far larger than a Hello is fine.
    raw = await Raw.open(port)
    await raw.hello(participants["bank_a"][1])
    rows = [AliasRegistration(alias_type="MSISDN", alias_value=f"+2547000{n:05d}",
                              account_ref=f"acc-{n}", owner_national_id="1234567890",
                              display_name="Jane Doe") for n in range(100)]
    raw.send(RegisterAliases(corr=3, aliases=rows))
    answer = await raw.frame()
    assert type(answer) is AliasesReply and answer.corr == 3
    raw.close()


async def open_from(port: int, source_host: str) -> Raw:
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(source_host, 0))
    return Raw(reader, writer)


async def test_connections_per_remote_address_are_bounded(tmp_path):
    """One address cannot take every connection slot: past the per-address bound its next
    connection is refused TOO_MANY_CONNECTIONS before any handshake, while another address
    still connects; a slot freed is a slot usable again."""
    from switch.testing import onboard, start_test_server

    server = await start_test_server(str(tmp_path), stream_connections_per_address_max=3)
    try:
        participants = await onboard(server, ["bank_a"])
        port = server.stream_port
        held = [await open_from(port, "127.0.0.1") for _ in range(3)]  # never say hello
        refused = await open_from(port, "127.0.0.1")
        await expect_protocol_error(refused, StreamError.TOO_MANY_CONNECTIONS)
        other = await open_from(port, "127.0.0.2")
        assert (await other.hello(participants["bank_a"][1])).participant_id
        held.pop().close()
        for _ in range(200):
            if server.stream_server.per_address.get("127.0.0.1", 0) < 3:
                break
            await asyncio.sleep(0.01)
        again = await open_from(port, "127.0.0.1")
        assert (await again.hello(participants["bank_a"][1])).participant_id
        for raw in held + [other, again]:
            raw.close()
    finally:
        await server.stop(drain_s=0)


async def test_revoking_a_key_closes_its_live_sessions_at_once(switch):
    """Revocation (a new key with revoke_others, as a key rotation does) closes every live
    stream session that key authenticated with a typed SESSION_REVOKED, at once; the key is
    refused from then on, the new key works, and another participant notices nothing."""
    server, participants = switch
    port = server.stream_port
    payer_id, old_key = participants["bank_a"]
    payee = await register_payee(port, participants["bank_b"][1])
    sessions = [await Raw.open(port) for _ in range(2)]
    for session in sessions:
        await session.hello(old_key)
    new_key = await server.credentials.issue_key(payer_id, revoke_others=True)
    for session in sessions:
        await expect_protocol_error(session, StreamError.SESSION_REVOKED)
    assert not server.gateway.attached(payer_id)
    again = await Raw.open(port)
    again.send(Hello(version=limits.PROTOCOL_VERSION, api_key=old_key))
    await expect_protocol_error(again, StreamError.AUTHENTICATION_FAILED)
    fresh = await Raw.open(port)
    assert (await fresh.hello(new_key)).participant_id == payer_id
    payee.send(Request(corr=9, message=ResolveRequest(alias=ALIAS, payer_user_ref="u2")))
    answer = await payee.frame()
    assert type(answer) is Reply and answer.message.result is Result.OK
    fresh.close()
    payee.close()


async def test_close_sessions_closes_one_keys_sessions_or_all_of_a_participant(switch):
    """The gateway hook: with a key's hash only the sessions that key authenticated close
    (another key's stay served); without one (suspension) every session of the participant
    closes; other participants' sessions never do."""
    from switch.server.gateway import hash_api_key

    server, participants = switch
    port = server.stream_port
    payer_id, first_key = participants["bank_a"]
    second_key = await server.credentials.issue_key(payer_id)
    first = await Raw.open(port)
    await first.hello(first_key)
    second = await Raw.open(port)
    await second.hello(second_key)
    other = await Raw.open(port)
    await other.hello(participants["bank_b"][1])
    closed = server.gateway.close_sessions(
        payer_id, hash_api_key(server.credentials.pepper, first_key), "key revoked")
    assert closed == 1
    await expect_protocol_error(first, StreamError.SESSION_REVOKED)
    second.send(Request(corr=1, message=StatusQuery(payer_participant_id=payer_id,
                                                    transfer_id="none")))
    assert type((await second.frame()).message) is Refused  # still served
    assert server.gateway.close_sessions(payer_id, None, "participant suspended") == 1
    answer = await second.frame()
    assert type(answer) is ProtocolErrorFrame and answer.error is StreamError.SESSION_REVOKED
    assert answer.detail == "participant suspended"
    other.send(Request(corr=2, message=StatusQuery(payer_participant_id=payer_id,
                                                   transfer_id="none")))
    assert type((await other.frame()).message) is Refused
    other.close()


async def test_a_status_query_flood_is_bounded_per_connection(tmp_path):
    """One connection pipelines thousands of status queries while another participant pays:
    at most STATUS_QUERIES_IN_FLIGHT_MAX of them are ever waiting on the sequencer — past
    it the server stops reading the connection until answers free room (TCP back-pressure:
    the excess is never decoded, queued or refused) — so they never fill the inbound queue
    in front of the other participant's transfers: all of those commit, none is refused
    SERVER_BUSY, and every query is answered."""
    from switch.testing import onboard, start_test_server

    server = await start_test_server(str(tmp_path), inbound_queue_max=256)
    try:
        participants = await onboard(server, ["flooder", "bank_a", "bank_b"])
        port = server.stream_port
        flooder_id, flooder_key = participants["flooder"]
        payee = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["bank_b"][1],
                                           on_credit_request=lambda cr: Decision(True))
        await payee.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
            owner_national_id="1234567890", display_name="Jane Doe")])
        payer = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_a"][1])
        flooder = await Raw.open(port)
        await flooder.hello(flooder_key)
        rounds, per_round = 5, 3_000
        answered = 0
        futures = []
        for round_number in range(rounds):
            flooder.send_bytes(b"".join(frame(Request(corr=n, message=StatusQuery(
                payer_participant_id=flooder_id, transfer_id=f"q-{n}")))
                for n in range(per_round)))
            futures += [payer.submit_transfer(transfer(f"p-{round_number}-{n}", 100))
                        for n in range(20)]
            for _ in range(per_round):
                reply = await flooder.frame(timeout_s=30)
                assert type(reply) is Reply
                assert reply.message.result is Result.TRANSFER_NOT_FOUND, reply.message
                answered += 1
        outcomes = await asyncio.wait_for(asyncio.gather(*futures), 60)
        assert [o.state for o in outcomes] == [TransferState.COMMITTED] * len(futures)
        assert server.metrics.inbound_refused_total == 0  # no transfer was turned away
        assert answered == rounds * per_round
        connection = next(c for c in server.stream_server.connections
                          if c.participant_id == flooder_id)
        assert connection.status_queries_peak == limits.STATUS_QUERIES_IN_FLIGHT_MAX
        assert connection.paused_for_calls > 0  # reading stopped at the bound
        payer_id = participants["bank_a"][0]
        assert server.positions()[payer_id]["KES"]["debits_posted"] == 100 * len(futures)
        flooder.close()
        await payer.close()
        await payee.close()
    finally:
        await server.stop(drain_s=0)
