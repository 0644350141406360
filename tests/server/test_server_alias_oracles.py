"""No alias oracle at the switch's doors, on a real running switch (journal file, SQLite
directory, sequencer) with participants on the stream connector (SDK) and the HTTP
connector.

- Issue 18 item 2: a transfer addressed by alias is charged and refused exactly like a
  resolve, so that once a payer's lookups are throttled, probing transfers answer what
  probing resolves answer (before: PAYER_INSUFFICIENT_LIQUIDITY, naming the payee, for
  every alias the payer had resolved in the last minute). The participant bucket binds
  on every path even when each lookup names a fresh end user.
- Issue 10 item 10: DELETE /aliases and POST /aliases tell a participant nothing about an
  alias it does not hold, and are charged to the same buckets.
"""

from __future__ import annotations

import time

import pytest

from connectors.sdk.http_client import HttpClient, SwitchError
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import Party, Refused, TransferRequest
from switch.core.results import Result
from switch.directory.types import DirectoryResult
from switch.core.messages import AliasRegistration
from switch.testing import onboard, start_test_server

CAPACITY = 30
# Lookups of the payers: 30 tokens, one more per minute (none within a test), a hit costs
# 1 and a miss 30, so one miss on the last token leaves the bucket half an hour in debt.
DIRECTORY = {
    "user_bucket": {"capacity_tokens": 100, "refill_tokens_per_minute": 1,
                    "hit_cost_tokens": 1, "miss_cost_tokens": 20, "refund_tokens": 1},
    "participant_buckets": {"T": {"capacity_tokens": CAPACITY, "refill_tokens_per_minute": 1,
                                  "hit_cost_tokens": 1, "miss_cost_tokens": CAPACITY,
                                  "refund_tokens": 1}},
    "participant_category_default": "T",
}


def existing(n: int) -> Party:
    return Party(alias_type="MSISDN", alias_value=f"+2547001{n:05d}")


def missing(n: int) -> Party:
    return Party(alias_type="MSISDN", alias_value=f"+2547009{n:05d}")


@pytest.fixture
async def switch(tmp_path):
    server = await start_test_server(str(tmp_path), directory=DIRECTORY, http_enabled=True,
                                     http={"port": 0})
    # The payer has no money: a transfer the directory routes is refused by the core for
    # liquidity, naming the payee participant: that is what an oracle would read.
    participants = await onboard(server, ["payee"])
    participants.update(await onboard(server, ["payer", "payer_2"], funding_minor=0))
    port = server.stream_port
    clients = {name: await StreamClient.connect("127.0.0.1", port, api_key=key)
               for name, (_, key) in participants.items()}
    answer = await clients["payee"].register_aliases([AliasRegistration(
        alias_type="MSISDN", alias_value=existing(n).alias_value, account_ref=f"acc-{n}",
        owner_national_id=f"{1_000_000_000 + n}", display_name="Jane Doe")
        for n in range(60)])
    assert answer.registered == 60
    yield server, participants, clients
    for client in clients.values():
        await client.close()
    await server.stop(drain_s=0)


_sent = [0]


async def probe_transfer(client: StreamClient, alias: Party) -> str:
    _sent[0] += 1
    answer = await client.submit_transfer(TransferRequest(
        transfer_id=f"probe-{_sent[0]}", payee=alias, amount_minor=100, currency="KES",
        expires_at_ns=time.time_ns() + 30 * 10**9, payer_user_ref=f"t-user-{_sent[0]}"))
    if type(answer) is Refused and answer.result is Result.PARTY_NOT_FOUND:
        return "missing"
    if type(answer) is Refused and answer.result is Result.LOOKUP_RATE_LIMITED:
        return "limited"
    # Anything else was routed: the alias exists (liquidity refusal names the payee).
    assert answer.result is Result.PAYER_INSUFFICIENT_LIQUIDITY, answer
    return "exists"


async def probe_resolve(client: StreamClient, alias: Party) -> str:
    _sent[0] += 1
    answer = await client.resolve(alias.alias_type, alias.alias_value,
                                  payer_user_ref=f"r-user-{_sent[0]}")
    return {Result.OK: "exists", Result.PARTY_NOT_FOUND: "missing",
            Result.LOOKUP_RATE_LIMITED: "limited"}[answer.result]


async def test_probing_transfers_after_throttling_answer_what_probing_resolves_answer(switch):
    _, _, clients = switch
    payer = clients["payer"]
    # Quiet: both admitted, both tell the same thing.
    assert await probe_transfer(payer, existing(50)) == "exists"
    assert await probe_resolve(payer, existing(51)) == "exists"
    # Heavy lookups (every one for a fresh end user) until one token is left...
    for n in range(CAPACITY - 3):
        assert await probe_resolve(payer, existing(n)) == "exists"
    # ... which a transfer to a missing alias spends, half an hour into debt.
    assert await probe_transfer(payer, missing(0)) == "missing"
    # Throttled: aliases resolved a moment ago, never resolved, and missing.
    probes = ([existing(n) for n in range(10)] + [existing(n) for n in range(40, 48)]
              + [missing(n) for n in range(1, 9)])
    by_transfer = [await probe_transfer(payer, alias) for alias in probes]
    by_resolve = [await probe_resolve(payer, alias) for alias in probes]
    assert by_transfer == by_resolve == ["limited"] * len(probes)


async def test_a_resolve_then_a_payment_costs_one_lookup_and_the_payment_is_still_gated(switch):
    _, _, clients = switch
    payer = clients["payer"]
    for n in range(CAPACITY - 1):
        assert await probe_resolve(payer, existing(n)) == "exists"
    # The payment to an alias just resolved was paid for by the resolve: it takes no token.
    assert await probe_transfer(payer, existing(0)) == "exists"
    assert await probe_resolve(payer, existing(CAPACITY)) == "exists"  # the last token
    # The bucket is empty: a payment to an alias just resolved is refused like a resolve.
    assert await probe_transfer(payer, existing(CAPACITY)) == "limited"
    assert await probe_transfer(payer, existing(1)) == "limited"


async def test_the_participant_bucket_binds_when_every_end_user_is_fresh(switch):
    _, _, clients = switch
    payer = clients["payer"]
    for n in range(CAPACITY):  # every lookup names a new end user
        assert await probe_resolve(payer, existing(n)) == "exists"
    # Spent: no lookup gets through on any path, whoever the end user is, including
    # payments to the aliases just resolved (before: each one went through, uncharged).
    for n in range(CAPACITY):
        assert await probe_resolve(payer, existing(n)) == "limited"
        assert await probe_transfer(payer, existing(n)) == "limited"
        assert await probe_transfer(payer, existing(CAPACITY + n)) == "limited"
    # Another participant's bucket is its own.
    assert await probe_resolve(clients["payer_2"], existing(0)) == "exists"
    assert await probe_transfer(clients["payer_2"], existing(1)) == "exists"


async def http_client(server, api_key: str) -> HttpClient:
    client = HttpClient(f"http://127.0.0.1:{server.http_connector.port}", api_key)
    await client.connect()
    return client


async def http_error(call) -> tuple:
    with pytest.raises(SwitchError) as raised:
        await call
    error = raised.value
    return error.http_status, error.result, error.detail, error.retry_after_ms


async def test_alias_writes_tell_nothing_about_aliases_held_elsewhere(switch):
    server, participants, clients = switch
    payee = await http_client(server, participants["payee"][1])
    payer = await http_client(server, participants["payer"][1])
    try:
        owner = "2000000001"
        national = await payee.register_alias(
            alias_type="NATIONAL_ID", alias_value=owner, account_ref="acc-n",
            owner_national_id=owner, display_name="Jane Doe")
        assert national.result is Result.OK
        # DELETE: an alias held by another participant and one held by nobody.
        for alias_type, held, free in (("MSISDN", existing(1).alias_value,
                                        missing(1).alias_value),
                                       ("NATIONAL_ID", owner, "2000000002")):
            answers = [await http_error(payer.delete_alias(alias_type, value))
                       for value in (held, free)]
            assert answers[0] == answers[1]
            assert answers[0][:2] == (404, Result.PARTY_NOT_FOUND)
        # POST: an owner at the cap (5 aliases) learns nothing about the alias asked for.
        capped_owner = "3000000001"
        for n in range(5):
            assert (await payer.register_alias(
                alias_type="MSISDN", alias_value=f"+2547005{n:05d}", account_ref="acc-1",
                owner_national_id=capped_owner, display_name="Ann Other")).result is Result.OK
        answers = [await http_error(payer.register_alias(
            alias_type="MSISDN", alias_value=value, account_ref="acc-1",
            owner_national_id=capped_owner, display_name="Ann Other"))
            for value in (existing(2).alias_value, missing(2).alias_value)]
        assert answers[0] == answers[1]
        assert str(int(DirectoryResult.OWNER_CAP_REACHED)) in answers[0][2]
        # Both are charged, a hit each (6 so far): probing deletions run the payer dry.
        for n in range(CAPACITY - 6):
            await http_error(payer.delete_alias("MSISDN", existing(n).alias_value))
        status, result, _, retry_after_ms = await http_error(
            payer.delete_alias("MSISDN", existing(0).alias_value))
        assert (status, result) == (429, Result.LOOKUP_RATE_LIMITED) and retry_after_ms > 0
        assert (await http_error(payer.register_alias(
            alias_type="MSISDN", alias_value=existing(3).alias_value, account_ref="acc-2",
            owner_national_id="3000000002", display_name="Ann Other")))[:2] == (
            429, Result.LOOKUP_RATE_LIMITED)
        assert await probe_resolve(clients["payer"], existing(4)) == "limited"
        # The holder's own writes are no lookup.
        assert (await payee.delete_alias("MSISDN", existing(1).alias_value)).result is Result.OK
    finally:
        await payee.close()
        await payer.close()
