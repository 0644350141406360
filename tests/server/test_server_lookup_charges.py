"""Who pays for a request-to-pay's directory lookup: the payee's end user named in the
request (`payee_user_ref`), like a transfer's lookup is charged to its `payer_user_ref` —
not one bucket shared by every customer of the participant. A real server, the real
directory with small user buckets, SDK clients over TCP."""

from __future__ import annotations

import time

import pytest

from connectors.sdk.stream_client import StreamClient
from switch.core.messages import Party, RequestToPay
from switch.core.results import Result
from switch.testing import onboard, start_test_server

S = 1_000_000_000
# One miss empties a user's bucket; it refills at one token a minute (not during the test).
SMALL_USER_BUCKET = {"capacity_tokens": 3, "refill_tokens_per_minute": 1,
                     "hit_cost_tokens": 1, "miss_cost_tokens": 3, "refund_tokens": 1}


@pytest.fixture
async def payee(tmp_path):
    server = await start_test_server(str(tmp_path),
                                     directory={"user_bucket": SMALL_USER_BUCKET})
    participants = await onboard(server, ["bank_a", "bank_b"])
    client = await StreamClient.connect("127.0.0.1", server.stream_port,
                                        api_key=participants["bank_b"][1], reconnect=False)
    yield client
    await client.close()
    await server.stop(drain_s=0)


def request(request_id: str, payee_user_ref: str) -> RequestToPay:
    # An alias nobody holds: a miss, which costs a user's whole bucket.
    return RequestToPay(request_id=request_id,
                        payer=Party(alias_type="MSISDN", alias_value="+254700999999"),
                        amount_minor=100, currency="KES",
                        expires_at_ns=time.time_ns() + 60 * S, payee_user_ref=payee_user_ref)


async def test_each_payee_end_user_is_charged_for_their_own_lookups(payee):
    answers = [await payee.request_to_pay(request(f"q{index}", f"merchant-{index}"))
               for index in range(6)]
    assert [answer.result for answer in answers] == [Result.PARTY_NOT_FOUND] * 6


async def test_one_end_user_runs_out_of_lookups_and_others_do_not(payee):
    first = await payee.request_to_pay(request("q1", "merchant-1"))
    again = await payee.request_to_pay(request("q2", "merchant-1"))
    other = await payee.request_to_pay(request("q3", "merchant-2"))
    assert first.result is Result.PARTY_NOT_FOUND
    assert again.result is Result.LOOKUP_RATE_LIMITED
    assert other.result is Result.PARTY_NOT_FOUND
