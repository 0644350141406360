"""The population model: same seed -> same bytes, and the distributions it promises."""

from __future__ import annotations

import hashlib
import math
import re
import statistics
import subprocess
import sys
import uuid
from collections import Counter

import msgspec
import pytest

from connectors.sim import limits
from connectors.sim.population import (
    AliasKind,
    CustomerKind,
    PROFILES_DIR,
    DiurnalRate,
    FlatRate,
    Population,
    ProfileError,
    Spike,
    UseCase,
    UseCaseSpec,
    _Zipf,
    decode_profile,
    load_profile,
    profile_names,
    rate_at,
)

replace = msgspec.structs.replace


def traffic_bytes(population: Population) -> bytes:
    return msgspec.msgpack.encode(list(population.intents()))


def customers_bytes(population: Population) -> bytes:
    return msgspec.msgpack.encode(
        [list(population.customers(pid)) for pid in population.participant_ids]
    )


@pytest.fixture(scope="module")
def quick():
    return load_profile("quick")


@pytest.fixture(scope="module")
def quick_population(quick):
    return Population.build(quick, seed=7)


@pytest.fixture(scope="module")
def quick_intents(quick_population):
    return list(quick_population.intents())


# --- determinism ------------------------------------------------------------------------


def test_same_profile_and_seed_give_byte_identical_traffic_and_customers(quick):
    a = Population.build(quick, seed=7)
    b = Population.build(quick, seed=7)
    assert traffic_bytes(a) == traffic_bytes(b)
    assert customers_bytes(a) == customers_bytes(b)


def test_another_seed_gives_other_traffic(quick):
    a = Population.build(quick, seed=7)
    b = Population.build(quick, seed=8)
    assert traffic_bytes(a) != traffic_bytes(b)
    assert customers_bytes(a) != customers_bytes(b)


_DIGEST_SCRIPT = """
import hashlib, msgspec
from connectors.sim.population import Population, load_profile
profile = msgspec.structs.replace(load_profile("quick"), duration_s=6, spike=None)
population = Population.build(profile, seed=11)
data = msgspec.msgpack.encode(list(population.intents()))
data += msgspec.msgpack.encode([list(population.customers(p)) for p in population.participant_ids])
print(hashlib.sha256(data).hexdigest())
"""


def test_traffic_does_not_depend_on_the_process_or_its_hash_seed(quick):
    population = Population.build(replace(quick, duration_s=6, spike=None), seed=11)
    here = hashlib.sha256(traffic_bytes(population) + customers_bytes(population)).hexdigest()
    digests = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT],
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(out.stdout.strip())
    assert digests == {here}


def test_workers_split_the_same_traffic_between_them(quick, quick_intents):
    population = Population.build(quick, seed=7)
    parts = [list(population.intents(worker_index=k, worker_count=3)) for k in range(3)]
    assert all(i.index % 3 == k for k, part in enumerate(parts) for i in part)
    merged = sorted((i for part in parts for i in part), key=lambda i: i.index)
    assert msgspec.msgpack.encode(merged) == msgspec.msgpack.encode(quick_intents)


# --- volume and schedule ----------------------------------------------------------------


def test_poisson_count_matches_the_integral_of_the_rate(quick_population, quick_intents):
    expected = quick_population.expected_count()
    assert abs(len(quick_intents) - expected) <= 4 * math.sqrt(expected)
    offsets = [i.offset_s for i in quick_intents]
    assert offsets == sorted(offsets)
    assert 0.0 <= offsets[0]
    assert offsets[-1] < quick_population.profile.duration_s
    assert [i.index for i in quick_intents] == list(range(len(quick_intents)))


def test_even_arrivals_offer_exactly_the_rate_each_second(quick):
    profile = replace(quick, arrivals="even", rate=FlatRate(rate_per_s=50.0), spike=None)
    population = Population.build(profile, seed=1)
    per_second = Counter(int(i.offset_s) for i in population.intents())
    assert per_second == {second: 50 for second in range(profile.duration_s)}


# --- payee popularity -------------------------------------------------------------------


@pytest.mark.parametrize("exponent", [0.5, 1.0, 1.3, 2.0])
def test_zipf_sampler_matches_the_exact_distribution(exponent):
    import random

    n, draws = 1000, 60_000
    zipf = _Zipf(n, exponent)
    rng = random.Random(exponent)
    counts = Counter(zipf.sample(rng.random) for _ in range(draws))
    assert min(counts) >= 1
    assert max(counts) <= n
    for top in (1, 10, 100):
        p = zipf.top_share(top)
        observed = sum(counts[k] for k in range(1, top + 1)) / draws
        sigma = math.sqrt(p * (1 - p) / draws)
        assert abs(observed - p) <= 5 * sigma + 1e-9, (top, observed, p)


def test_top_merchants_take_their_zipf_share_and_merchants_outdraw_people(
    quick_population, quick_intents
):
    population = quick_population
    merchant_payments = [i for i in quick_intents if i.use_case is UseCase.MERCHANT]
    top = 5  # 1% of 500 merchants
    top_aliases = {
        a.value
        for rank in range(1, top + 1)
        for a in population.merchant(population.payee_rank_index(UseCase.MERCHANT, rank)).aliases
    }
    observed = sum(i.payee_alias in top_aliases for i in merchant_payments) / len(merchant_payments)
    p = population.payee_top_share(UseCase.MERCHANT, top)
    assert p > 0.25  # 1% of merchants take over a quarter of merchant payments
    assert abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / len(merchant_payments))

    p2p = sum(i.use_case is UseCase.P2P for i in quick_intents)
    per_merchant = len(merchant_payments) / population.profile.merchants
    per_person = p2p / population.profile.people
    assert per_merchant > 10 * per_person


# --- amounts ----------------------------------------------------------------------------


def _amount_profile(quick, exponent: int):
    cases = [
        UseCaseSpec(use_case=case, share=0.25, median_major=median, sigma=sigma, cap_major=cap)
        for case, median, sigma, cap in (
            (UseCase.P2P, 1000.0, 1.1, 250_000),
            (UseCase.MERCHANT, 300.0, 1.0, 250_000),
            (UseCase.BILL, 1500.0, 0.9, 250_000),
            (UseCase.G2P, 2000.0, 0.35, 20_000),
        )
    ]
    return replace(
        quick,
        use_cases=cases,
        currency_exponent=exponent,
        rate=FlatRate(rate_per_s=20_000.0),
        spike=None,
        duration_s=4,
    )


@pytest.mark.parametrize("exponent", [2, 0])
def test_amount_medians_follow_the_profile_in_minor_units(quick, exponent):
    profile = _amount_profile(quick, exponent)
    by_case: dict[UseCase, list[int]] = {}
    for intent in Population.build(profile, seed=3).intents():
        assert type(intent.amount_minor) is int
        assert intent.currency == "KES"
        by_case.setdefault(intent.use_case, []).append(intent.amount_minor)
    scale = 10**exponent
    for spec in profile.use_cases:
        amounts = by_case[spec.use_case]
        assert len(amounts) > 15_000
        assert min(amounts) >= 1
        assert max(amounts) <= spec.cap_major * scale
        median = statistics.median(amounts)
        assert abs(median / (spec.median_major * scale) - 1.0) < 0.05, (spec.use_case, median)
        # The spread is the profile's: for a log-normal, ln(q90/q10) = 2 * 1.2816 * sigma.
        q = statistics.quantiles(amounts, n=10)
        sigma = math.log(q[-1] / q[0]) / (2 * 1.2815516)
        assert sigma == pytest.approx(spec.sigma, rel=0.05), spec.use_case


# --- offered rate -----------------------------------------------------------------------


def _diurnal_profile(quick):
    return replace(
        quick,
        duration_s=60,
        spike=None,
        rate=DiurnalRate(
            mean_rate_per_s=2000.0,
            peak_to_trough_ratio=8.0,
            peak_hour=13.0,
            start_hour=0.0,
            day_s=60.0,
        ),
    )


def test_diurnal_curve_has_its_peak_trough_ratio_and_mean(quick):
    profile = _diurnal_profile(quick)
    grid = [rate_at(profile, t / 100) for t in range(6000)]
    assert max(grid) / min(grid) == pytest.approx(8.0, rel=1e-3)
    assert statistics.fmean(grid) == pytest.approx(2000.0, rel=1e-3)
    peak_t = 13.0 / 24.0 * 60.0
    assert max(range(6000), key=grid.__getitem__) / 100 == pytest.approx(peak_t, abs=0.02)
    assert rate_at(profile, 60.0) == 0.0  # nothing is offered after the run


def test_diurnal_traffic_peaks_and_troughs_where_the_curve_does(quick):
    profile = _diurnal_profile(quick)
    population = Population.build(profile, seed=5)
    per_second = Counter(int(i.offset_s) for i in population.intents())
    peak_s = int(13.0 / 24.0 * 60.0)  # 32
    trough_s = int(1.0 / 24.0 * 60.0)  # 01:00 -> 2
    peak = sum(per_second[s] for s in range(peak_s - 3, peak_s + 4))
    trough = sum(per_second[s] for s in range(trough_s - 2, trough_s + 5))
    expected = sum(population.rate_at(s + 0.5) for s in range(peak_s - 3, peak_s + 4)) / sum(
        population.rate_at(s + 0.5) for s in range(trough_s - 2, trough_s + 5)
    )
    assert expected > 6.0
    assert peak / trough == pytest.approx(expected, rel=0.1)


def test_spike_multiplies_the_rate_for_its_window_only(quick):
    base = _diurnal_profile(quick)
    spiked = replace(base, spike=Spike(start_s=20.0, duration_s=10.0, factor=3.0))
    for t in (19.99, 20.0, 25.0, 29.99, 30.0):
        inside = 20.0 <= t < 30.0
        assert rate_at(spiked, t) == pytest.approx(rate_at(base, t) * (3.0 if inside else 1.0))
    spiked_counts = Counter(int(i.offset_s) for i in Population.build(spiked, seed=9).intents())
    base_counts = Counter(int(i.offset_s) for i in Population.build(base, seed=9).intents())

    def ratio(seconds: range) -> float:
        return sum(spiked_counts[s] for s in seconds) / sum(base_counts[s] for s in seconds)

    in_spike = ratio(range(20, 30))
    before = ratio(range(5, 15))
    assert in_spike == pytest.approx(3.0, rel=0.05)
    assert before == pytest.approx(1.0, rel=0.05)


def test_step_rate_climbs_by_increment_each_step():
    profile = load_profile("step")
    rate = profile.rate
    for k in range(rate.steps):
        t = k * rate.step_s + 1.0
        assert rate_at(profile, t) == rate.start_rate_per_s + k * rate.increment_per_s


# --- customers and aliases --------------------------------------------------------------


def test_every_intent_resolves_to_its_expected_participant(quick_population, quick_intents):
    population = quick_population
    alias_owner: dict[tuple[str, str], tuple[str, str]] = {}
    users: dict[str, str] = {}
    national_ids: dict[str, str] = {}
    people = 0
    for pid in population.participant_ids:
        customers = list(population.customers(pid))
        assert len(customers) == population.customer_count(pid)
        for c in customers:
            assert c.participant_id == pid
            assert c.user_id not in users
            users[c.user_id] = pid
            people += c.kind is CustomerKind.PERSON
            if c.national_id is not None:
                assert c.national_id not in national_ids
                national_ids[c.national_id] = pid
            for a in c.aliases:
                key = (a.kind.value, a.value)
                assert key not in alias_owner, f"alias {key} registered twice"
                alias_owner[key] = (pid, c.user_id)
    assert people == population.profile.people
    for intent in quick_intents:
        assert users[intent.payer_user_id] == intent.payer_participant_id
        if intent.payee_alias_kind is AliasKind.NATIONAL_ID:
            assert intent.use_case is UseCase.G2P
            assert national_ids[intent.payee_alias] == intent.payee_participant_id
        else:
            owner_pid, owner_user = alias_owner[(intent.payee_alias_kind.value, intent.payee_alias)]
            assert owner_pid == intent.payee_participant_id
            assert owner_user != intent.payer_user_id


def test_market_shares_and_alias_formats(quick_population):
    population = quick_population
    profile = population.profile
    kinds = Counter()
    for spec in profile.participants:
        customers = population.customers(spec.participant_id)
        persons = [c for c in customers if c.kind is CustomerKind.PERSON]
        assert abs(len(persons) - spec.people_share * profile.people) <= 1
        for person in persons:
            assert re.fullmatch(r"\d{%d}" % limits.NATIONAL_ID_DIGITS, person.national_id)
            for alias in person.aliases:
                kinds[alias.kind] += 1
                if alias.kind is AliasKind.MSISDN:
                    assert re.fullmatch(r"\+2547\d{8}", alias.value)
                elif alias.kind is AliasKind.EMAIL:
                    assert re.fullmatch(r"[a-z]+\.[a-z]+\.\d+@[a-z.]+\.example", alias.value)
                elif alias.kind is AliasKind.HANDLE:
                    assert alias.value.endswith("@" + spec.participant_id)
                else:
                    assert alias.kind is AliasKind.RANDOM
                    assert uuid.UUID(alias.value).version == 4
    mix = profile.alias_mix
    n = profile.people
    for kind, p in (
        (AliasKind.EMAIL, mix.email),
        (AliasKind.HANDLE, mix.handle),
        (AliasKind.RANDOM, mix.random),
    ):
        assert abs(kinds[kind] / n - p) <= 5 * math.sqrt(p * (1 - p) / n), kind
    # Everyone is payable: those who drew no alias got an MSISDN.
    assert kinds[AliasKind.MSISDN] / n >= mix.msisdn
    assert population.alias_kind_counts()[AliasKind.EMAIL.value] == kinds[AliasKind.EMAIL]


def test_unknown_participant_is_a_key_error(quick_population):
    with pytest.raises(KeyError):
        list(quick_population.customers("bank_zz"))


# --- profiles ---------------------------------------------------------------------------


def test_every_shipped_profile_loads_and_builds():
    names = profile_names()
    assert {"quick", "national", "festival", "soak", "step"} <= set(names)
    for name in names:
        profile = load_profile(name)
        population = Population.build(profile, seed=1)
        assert population.expected_count() > 0
        first = next(population.intents())
        assert first.currency == profile.currency


_VALID = (PROFILES_DIR / "quick.toml").read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("people_share = 0.15", "people_share = 0.25"), "people_share must sum to 1"),
        (("duration_s = 30", "duration_s = 30\nsurprise = 1"), "surprise"),
        (("mean_rate_per_s = 200.0", "mean_rate_per_s = -1.0"), "mean_rate_per_s"),
        (("start_s = 20.0", "start_s = 29.0"), "spike must end within duration_s"),
        (('g2p_payer_participant_id = "bank_a"', ""), "G2P payments need"),
        (('payer_participant_id = "bank_a"', 'payer_participant_id = "bank_q"'), "must name one"),
        (('currency = "KES"', 'currency = "kes"'), "currency"),
        (("merchants = 500", "merchants = 0"), "MERCHANT payments need merchants"),
        (("people = 10000", f"people = {limits.PEOPLE_MAX + 1}"), "people"),
        (('use_case = "BILL"', 'use_case = "P2P"'), "each use_case may appear once"),
    ],
)
def test_a_bad_profile_is_a_typed_error(change, message):
    old, new = change
    assert old in _VALID
    with pytest.raises(ProfileError) as caught:
        decode_profile(_VALID.replace(old, new, 1))
    assert message in caught.value.reason


def test_a_step_profile_must_last_its_steps_and_a_missing_profile_is_typed(tmp_path):
    text = (PROFILES_DIR / "step.toml").read_text()
    with pytest.raises(ProfileError, match="steps \\* step_s"):
        decode_profile(text.replace("duration_s = 600", "duration_s = 601"))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile("no_such_profile")
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")
