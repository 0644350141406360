"""Anti-enumeration over HTTP on a real switch with the scheme's default buckets (user
bucket 100 tokens, a miss costs 20): probing unknown aliases soon answers 429
LOOKUP_RATE_LIMITED with Retry-After, and only that payer end user is throttled."""

from __future__ import annotations

from switch.core.results import Result

from http_helpers import PAYEE_ALIAS


async def test_probing_unknown_aliases_is_rate_limited_per_end_user(payer_and_payee):
    payer, _, _, _ = payer_and_payee
    results = []
    for n in range(7):
        answer = await payer.resolve("MSISDN", f"+55119000000{n:02d}", payer_user_ref="prober")
        results.append(answer)
    assert [a.result for a in results[:5]] == [Result.PARTY_NOT_FOUND] * 5
    limited = results[5]
    assert limited.result is Result.LOOKUP_RATE_LIMITED
    assert limited.retry_after_ms > 0
    assert results[6].result is Result.LOOKUP_RATE_LIMITED
    # Even a known alias is refused to the throttled user: admission leaks nothing.
    known = await payer.resolve(PAYEE_ALIAS.alias_type, PAYEE_ALIAS.alias_value,
                                payer_user_ref="prober")
    assert known.result is Result.LOOKUP_RATE_LIMITED
    # Another end user of the same payer is not affected.
    other = await payer.resolve(PAYEE_ALIAS.alias_type, PAYEE_ALIAS.alias_value,
                                payer_user_ref="honest")
    assert other.result is Result.OK
    assert other.display_name_masked == "M*** S***"


async def test_rate_limited_answer_carries_retry_after_header(payer_and_payee):
    payer, _, _, _ = payer_and_payee
    for n in range(5):
        await payer.resolve("MSISDN", f"+55119100000{n:02d}", payer_user_ref="prober2")
    # The raw answer, as any HTTP client sees it.
    path = b"/aliases/MSISDN/%2B5511910000099?payer_user_ref=prober2"
    response = await payer.pool.request(b"GET", path, None, payer._headers(b"GET", path, None))
    assert response.status == 429
    assert int(response.headers[b"retry-after"]) >= 1
    assert b'"name":"LOOKUP_RATE_LIMITED"' in response.body
