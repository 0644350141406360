"""A seeded model of a country's payers and payees: who pays whom, how much, and when.

The bench drivers and simulators build one `Population` from a profile (a TOML file under
`connectors/sim/profiles/`) and a seed, and then ask it for
- the participants and their customers with aliases (`customers(participant_id)`), so the
  simulators can hold the accounts and register the aliases in the directory;
- the payments to offer (`intents()`), each with its scheduled offset from the run start;
- the offered rate at any moment of the run (`rate_at(t_s)`).

The same profile and seed always give byte-identical customers and traffic, in any process
(nothing here depends on `hash()`, dict order of user input, the clock or the platform's
random source). Generation costs O(1) memory per customer: a customer's attributes are a
pure function of its index, recomputed when needed, so a population of tens of millions is
built in milliseconds; only the offered-rate grid (8 bytes per second of run) is stored.

This module must never do I/O beyond reading a profile file, and never read the clock: a
driver turns offsets into wall time.
"""

from __future__ import annotations

import enum
import math
import random
from array import array
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Iterator, Literal

import msgspec

from connectors.sim import limits

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

_U64 = (1 << 64) - 1
_SHARE_SUM_TOLERANCE = 1e-6


class AliasKind(enum.StrEnum):
    """Alias types as the directory names them (ARCHITECTURE.md, Directory)."""

    MSISDN = "MSISDN"
    EMAIL = "EMAIL"
    NATIONAL_ID = "NATIONAL_ID"
    HANDLE = "HANDLE"
    RANDOM = "RANDOM"


class UseCase(enum.StrEnum):
    P2P = "P2P"  # person to person, payee drawn by popularity among people
    MERCHANT = "MERCHANT"  # person to merchant, payee drawn by popularity among merchants
    BILL = "BILL"  # person to biller (utilities, telecoms, schools)
    G2P = "G2P"  # government to a person, paid by national ID through the mapper


class ParticipantKind(enum.StrEnum):
    BANK = "bank"
    WALLET = "wallet"


class CustomerKind(enum.StrEnum):
    PERSON = "person"
    MERCHANT = "merchant"
    BILLER = "biller"
    GOVERNMENT = "government"


ParticipantId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
RatePerS = Annotated[float, msgspec.Meta(ge=0.0, le=limits.RATE_PER_S_MAX)]
Hour = Annotated[float, msgspec.Meta(ge=0.0, lt=24.0)]
OffsetS = Annotated[float, msgspec.Meta(ge=0.0, le=limits.RUN_DURATION_S_MAX)]
ZipfExponent = Annotated[float, msgspec.Meta(gt=0.0, le=4.0)]


class ParticipantSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    participant_id: ParticipantId
    kind: ParticipantKind
    # Share of the people, and of the merchants and billers, whose accounts it holds.
    people_share: Share
    business_share: Share
    # Domain of the HANDLE aliases it issues ("name@domain"); defaults to the id.
    handle_domain: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")] | None = (
        None
    )


class AliasMix(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Probability that a person has registered each kind of alias (independently).

    A person who draws none gets an MSISDN, so everyone can be paid: the realised MSISDN
    share is msisdn + (1 - msisdn) * P(no other kind).
    """

    msisdn: Probability = 0.9
    email: Probability = 0.25
    handle: Probability = 0.1
    random: Probability = 0.2


class UseCaseSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Share of the payments and their amount distribution for one use case.

    Amounts are log-normal: median `median_major` in major units (a statistic, so it is
    written as people quote it; every generated amount is an integer of minor units),
    spread `sigma` (the standard deviation of the log), clamped to [1 minor unit,
    `cap_major`].
    """

    use_case: UseCase
    share: Share
    median_major: Annotated[float, msgspec.Meta(gt=0.0, le=1e9)]
    sigma: Annotated[float, msgspec.Meta(ge=0.0, le=4.0)]
    cap_major: Annotated[int, msgspec.Meta(ge=1, le=10**11)]


class FlatRate(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="flat",
    tag_field="kind",
):
    """The same offered rate for the whole run (soak)."""

    rate_per_s: RatePerS


class DiurnalRate(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="diurnal",
    tag_field="kind",
):
    """A day's curve compressed into `day_s` seconds of run.

    rate(hour) = mean * (1 + a * cos(2*pi*(hour - peak_hour)/24)) with
    a = (R - 1)/(R + 1), R = peak_to_trough_ratio: the mean over a day is exactly
    `mean_rate_per_s`, the peak is at `peak_hour` and the trough twelve hours later.
    """

    mean_rate_per_s: RatePerS
    peak_to_trough_ratio: Annotated[float, msgspec.Meta(ge=1.0, le=1000.0)]
    peak_hour: Hour = 13.0
    start_hour: Hour = 0.0
    day_s: Annotated[float, msgspec.Meta(gt=0.0, le=limits.RUN_DURATION_S_MAX)]


class StepRate(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="step",
    tag_field="kind",
):
    """Step k (from 0) offers start + k * increment for `step_s` seconds (capacity search)."""

    start_rate_per_s: RatePerS
    increment_per_s: RatePerS
    step_s: Annotated[int, msgspec.Meta(ge=1, le=limits.RUN_DURATION_S_MAX)]
    steps: Annotated[int, msgspec.Meta(ge=1, le=limits.STEPS_MAX)]

    def __post_init__(self) -> None:
        top = self.start_rate_per_s + (self.steps - 1) * self.increment_per_s
        if top > limits.RATE_PER_S_MAX:
            raise ValueError(f"the last step offers {top}/s, above {limits.RATE_PER_S_MAX}/s")


RateShape = FlatRate | DiurnalRate | StepRate


class Spike(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A festival: the rate is multiplied by `factor` during [start_s, start_s + duration_s)."""

    start_s: OffsetS
    duration_s: Annotated[float, msgspec.Meta(gt=0.0, le=limits.RUN_DURATION_S_MAX)]
    factor: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)]


class Profile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
    description: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=limits.RUN_DURATION_S_MAX)]
    currency: Currency
    currency_exponent: Annotated[int, msgspec.Meta(ge=0, le=limits.CURRENCY_EXPONENT_MAX)]
    people: Annotated[int, msgspec.Meta(ge=2, le=limits.PEOPLE_MAX)]
    merchants: Annotated[int, msgspec.Meta(ge=0, le=limits.MERCHANTS_MAX)]
    billers: Annotated[int, msgspec.Meta(ge=0, le=limits.BILLERS_MAX)]
    participants: Annotated[
        list[ParticipantSpec], msgspec.Meta(min_length=1, max_length=limits.PARTICIPANTS_MAX)
    ]
    alias_mix: AliasMix = AliasMix()
    msisdn_prefix: Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{1,5}$")] = "+2547"
    # Zipf exponents of payee popularity by rank. Merchants and billers are far more
    # popular than people because far fewer of them share a large part of the payments,
    # and their steeper exponent concentrates that further on the big ones.
    people_zipf_exponent: ZipfExponent = 0.8
    merchant_zipf_exponent: ZipfExponent = 1.1
    biller_zipf_exponent: ZipfExponent = 1.3
    use_cases: Annotated[list[UseCaseSpec], msgspec.Meta(min_length=1, max_length=len(UseCase))]
    g2p_payer_participant_id: ParticipantId | None = None
    rate: RateShape
    spike: Spike | None = None
    # "poisson": exponential gaps (real traffic); "even": one payment per unit of offered
    # volume, evenly spaced (no arrival noise, for step searches and exact-rate checks).
    arrivals: Literal["poisson", "even"] = "poisson"

    def __post_init__(self) -> None:
        ids = [p.participant_id for p in self.participants]
        if len(set(ids)) != len(ids):
            raise ValueError("participant_id values must be unique")
        for field in ("people_share", "business_share"):
            total = sum(getattr(p, field) for p in self.participants)
            if abs(total - 1.0) > _SHARE_SUM_TOLERANCE:
                raise ValueError(f"participants' {field} must sum to 1, not {total}")
        cases = [u.use_case for u in self.use_cases]
        if len(set(cases)) != len(cases):
            raise ValueError("each use_case may appear once")
        total = sum(u.share for u in self.use_cases)
        if abs(total - 1.0) > _SHARE_SUM_TOLERANCE:
            raise ValueError(f"use_cases' share must sum to 1, not {total}")
        shares = {u.use_case: u.share for u in self.use_cases}
        if shares.get(UseCase.MERCHANT, 0.0) > 0.0 and self.merchants == 0:
            raise ValueError("MERCHANT payments need merchants > 0")
        if shares.get(UseCase.BILL, 0.0) > 0.0 and self.billers == 0:
            raise ValueError("BILL payments need billers > 0")
        if shares.get(UseCase.G2P, 0.0) > 0.0 and self.g2p_payer_participant_id is None:
            raise ValueError("G2P payments need g2p_payer_participant_id")
        if self.g2p_payer_participant_id is not None and self.g2p_payer_participant_id not in ids:
            raise ValueError("g2p_payer_participant_id must name one of the participants")
        scale = 10**self.currency_exponent
        for u in self.use_cases:
            if u.cap_major * scale > limits.AMOUNT_MINOR_MAX:
                raise ValueError(f"{u.use_case} cap_major is above {limits.AMOUNT_MINOR_MAX} minor")
        if self.spike is not None and self.spike.start_s + self.spike.duration_s > self.duration_s:
            raise ValueError("the spike must end within duration_s")
        rate = self.rate
        if isinstance(rate, StepRate) and rate.steps * rate.step_s != self.duration_s:
            raise ValueError("a step profile's duration_s must equal steps * step_s")


class ProfileError(Exception):
    """A profile file that is missing or does not satisfy the bounds of `Profile`."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"profile {source}: {reason}")
        self.source = source
        self.reason = reason


class Alias(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kind: AliasKind
    value: str


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    participant_id: str
    kind: CustomerKind
    display_name: str
    # Persons only: the synthetic national ID G2P pays them by (simulators link it in the
    # G2P mapper; the directory keeps only its HMAC).
    national_id: str | None
    aliases: tuple[Alias, ...]


class PaymentIntent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One payment to offer. `payee_participant_id` is where the alias should resolve: for
    checking results only, a driver must never send it."""

    index: int
    offset_s: float
    use_case: UseCase
    payer_participant_id: str
    payer_user_id: str
    payee_alias_kind: AliasKind
    payee_alias: str
    payee_participant_id: str
    amount_minor: int
    currency: str


def load_profile(name_or_path: str | Path) -> Profile:
    """Load `connectors/sim/profiles/<name>.toml`, or a TOML file by path; a typed error otherwise."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
    else:
        path = PROFILES_DIR / f"{text}.toml"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProfileError(str(path), f"cannot read it ({error.strerror or error})") from None
    return decode_profile(data, source=str(path))


def decode_profile(data: bytes | str, source: str = "<text>") -> Profile:
    try:
        return msgspec.toml.decode(data, type=Profile)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ProfileError(source, str(error)) from None


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def rate_at(profile: Profile, t_s: float) -> float:
    """Offered payments per second at `t_s` seconds into the run; 0 outside the run."""
    assert t_s >= 0.0, t_s
    if t_s >= profile.duration_s:
        return 0.0
    shape = profile.rate
    if isinstance(shape, FlatRate):
        rate_per_s = shape.rate_per_s
    elif isinstance(shape, DiurnalRate):
        hour = (shape.start_hour + t_s * 24.0 / shape.day_s) % 24.0
        amplitude = (shape.peak_to_trough_ratio - 1.0) / (shape.peak_to_trough_ratio + 1.0)
        rate_per_s = shape.mean_rate_per_s * (
            1.0 + amplitude * math.cos(2.0 * math.pi * (hour - shape.peak_hour) / 24.0)
        )
    else:
        step = min(int(t_s // shape.step_s), shape.steps - 1)
        rate_per_s = shape.start_rate_per_s + step * shape.increment_per_s
    spike = profile.spike
    if spike is not None and spike.start_s <= t_s < spike.start_s + spike.duration_s:
        rate_per_s *= spike.factor
    return rate_per_s


# --- deterministic per-index attributes -------------------------------------------------

_FIRST_NAMES = (
    "Amina", "Baraka", "Chloe", "Daniel", "Esther", "Faith", "Grace", "Hassan", "Imani",
    "James", "Joy", "Kevin", "Lina", "Mercy", "Musa", "Naomi", "Omar", "Peter", "Rose",
    "Samuel", "Tatu", "Victor", "Wanjiru", "Yusuf", "Zawadi", "Ana", "Carlos", "Maria",
    "Priya", "Ravi", "Thabo", "Nomsa",
)  # fmt: skip
_LAST_NAMES = (
    "Achieng", "Banda", "Chege", "Diallo", "Eze", "Farah", "Gathoni", "Hamisi", "Ibrahim",
    "Juma", "Kamau", "Langat", "Mwangi", "Njoroge", "Odhiambo", "Otieno", "Phiri", "Ruto",
    "Silva", "Tembo", "Wafula", "Zulu", "Santos", "Sharma", "Nkosi", "Mensah", "Okafor",
    "Kariuki", "Wekesa", "Cheruiyot", "Moyo", "Abdi",
)  # fmt: skip
_TRADES = ("Grocers", "Pharmacy", "Hardware", "Kiosk", "Butchery", "Salon", "Cafe", "Supplies")
_EMAIL_DOMAINS = ("mail.example", "inbox.example", "post.example")
_ALIAS_KIND_ORDER = (AliasKind.MSISDN, AliasKind.EMAIL, AliasKind.HANDLE, AliasKind.RANDOM)

# Multipliers of the index bijections that spread MSISDNs and national IDs over their digit
# space: odd and not divisible by 5, hence coprime to every power of ten.
_MSISDN_MULTIPLIER = 48_271
_NATIONAL_ID_MULTIPLIER = 69_621
assert _MSISDN_MULTIPLIER % 2 == 1 and _MSISDN_MULTIPLIER % 5 != 0
assert _NATIONAL_ID_MULTIPLIER % 2 == 1 and _NATIONAL_ID_MULTIPLIER % 5 != 0


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit integers that scatters nearby inputs."""
    x = (x + 0x9E3779B97F4A7C15) & _U64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


def _block_cuts(count: int, shares: list[float]) -> list[int]:
    """End index of each participant's contiguous block of `count` customers.

    Largest-remainder rounding gives every participant its exact share to within one
    customer, with no sampling noise.
    """
    raw = [count * s for s in shares]
    sizes = [int(r) for r in raw]
    remainders = sorted(range(len(raw)), key=lambda i: (sizes[i] - raw[i], i))
    for i in remainders[: count - sum(sizes)]:
        sizes[i] += 1
    cuts = list(accumulate(sizes))
    assert cuts[-1] == count
    return cuts


def _coprime_multiplier(n: int, rng: random.Random) -> int:
    """A seeded multiplier for the rank -> index bijection `(rank * a + b) mod n`."""
    if n <= 2:
        return 1
    while True:
        a = rng.randrange(1, n)
        if math.gcd(a, n) == 1:
            return a


class _Zipf:
    """Zipf(n, s) ranks 1..n by rejection-inversion (Hoermann & Derflinger 1996).

    O(1) memory and expected time per draw for any n, so popularity over tens of millions
    of people needs no cumulative table. Follows Apache Commons' RejectionInversionZipfSampler.
    """

    __slots__ = ("n", "exponent", "h_integral_x1", "h_integral_n", "squeeze")

    def __init__(self, n: int, exponent: float) -> None:
        assert n >= 1
        assert exponent > 0.0
        self.n = n
        self.exponent = exponent
        self.h_integral_x1 = self._h_integral(1.5) - 1.0
        self.h_integral_n = self._h_integral(n + 0.5)
        self.squeeze = 2.0 - self._h_integral_inverse(self._h_integral(2.5) - self._h(2.0))

    def _h(self, x: float) -> float:
        return math.exp(-self.exponent * math.log(x))

    def _h_integral(self, x: float) -> float:
        log_x = math.log(x)
        return _expm1_over_x((1.0 - self.exponent) * log_x) * log_x

    def _h_integral_inverse(self, x: float) -> float:
        t = x * (1.0 - self.exponent)
        if t < -1.0:
            t = -1.0  # rounding near the lower end; the exact value is > -1
        return math.exp(_log1p_over_x(t) * x)

    def sample(self, random_unit) -> int:
        n = self.n
        while True:
            u = self.h_integral_n + random_unit() * (self.h_integral_x1 - self.h_integral_n)
            x = self._h_integral_inverse(u)
            k = int(x + 0.5)
            if k < 1:
                k = 1
            elif k > n:
                k = n
            if k - x <= self.squeeze or u >= self._h_integral(k + 0.5) - self._h(k):
                return k

    def top_share(self, k: int) -> float:
        """Exact probability that a draw falls in ranks 1..k (for tests and reports)."""
        return _harmonic(k, self.exponent) / _harmonic(self.n, self.exponent)


def _harmonic(n: int, s: float) -> float:
    return math.fsum(i ** -s for i in range(1, n + 1))


def _log1p_over_x(x: float) -> float:
    if abs(x) > 1e-8:
        return math.log1p(x) / x
    return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))


def _expm1_over_x(x: float) -> float:
    if abs(x) > 1e-8:
        return math.expm1(x) / x
    return 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))


class _Rank:
    """Popularity rank -> customer index, a seeded bijection so the most popular payees
    are scattered over the participants' blocks rather than all at the first one."""

    __slots__ = ("zipf", "n", "multiplier", "offset")

    def __init__(self, n: int, exponent: float, rng: random.Random) -> None:
        self.zipf = _Zipf(n, exponent)
        self.n = n
        self.multiplier = _coprime_multiplier(n, rng)
        self.offset = rng.randrange(n)

    def index_of_rank(self, rank: int) -> int:
        assert 1 <= rank <= self.n
        return ((rank - 1) * self.multiplier + self.offset) % self.n

    def draw(self, random_unit) -> int:
        return ((self.zipf.sample(random_unit) - 1) * self.multiplier + self.offset) % self.n


class Population:
    """A built population; see the module docstring. Create it with `Population.build`."""

    def __init__(self, profile: Profile, seed: int) -> None:
        assert 0 <= seed < 2**63, seed
        self.profile = profile
        self.seed = seed
        self.currency = profile.currency
        self.participant_ids = tuple(p.participant_id for p in profile.participants)
        self._handle_domains = tuple(
            p.handle_domain or p.participant_id for p in profile.participants
        )
        people_shares = [p.people_share for p in profile.participants]
        self._people_cuts = _block_cuts(profile.people, people_shares)
        business_shares = [p.business_share for p in profile.participants]
        self._merchant_cuts = _block_cuts(profile.merchants, business_shares)
        self._biller_cuts = _block_cuts(profile.billers, business_shares)

        keys = random.Random(f"ponte-population:{seed}:keys")
        self._alias_key = keys.getrandbits(64)
        self._name_key = keys.getrandbits(64)
        self._random_key_hi = keys.getrandbits(64)
        self._random_key_lo = keys.getrandbits(64)
        self._msisdn_offset = keys.randrange(10**limits.MSISDN_SUBSCRIBER_DIGITS)
        self._national_id_offset = keys.randrange(10**limits.NATIONAL_ID_DIGITS)
        mix = profile.alias_mix
        self._alias_thresholds = tuple(
            round(p * 65536) for p in (mix.msisdn, mix.email, mix.handle, mix.random)
        )

        self._people_rank = _Rank(profile.people, profile.people_zipf_exponent, keys)
        self._merchant_rank = None
        if profile.merchants:
            self._merchant_rank = _Rank(profile.merchants, profile.merchant_zipf_exponent, keys)
        self._biller_rank = None
        if profile.billers:
            self._biller_rank = _Rank(profile.billers, profile.biller_zipf_exponent, keys)

        # Offered volume: cum[i] = expected payments in [0, i) seconds.
        steps = limits.RATE_GRID_SUBSAMPLES
        cum = array("d", [0.0])
        total = 0.0
        for second in range(profile.duration_s):
            total += math.fsum(
                rate_at(profile, second + (j + 0.5) / steps) for j in range(steps)
            ) / steps
            cum.append(total)
        self._volume_cum = cum

    @classmethod
    def build(cls, profile: Profile, seed: int) -> Population:
        return cls(profile, seed)

    # --- offered rate -------------------------------------------------------------------

    def rate_at(self, t_s: float) -> float:
        return rate_at(self.profile, t_s)

    def expected_count(self) -> float:
        """Expected number of intents over the run (the integral of `rate_at`)."""
        return self._volume_cum[-1]

    # --- customers ----------------------------------------------------------------------

    def _block(self, cuts: list[int], participant_index: int) -> range:
        lo = cuts[participant_index - 1] if participant_index else 0
        return range(lo, cuts[participant_index])

    def _participant_index(self, participant_id: str) -> int:
        try:
            return self.participant_ids.index(participant_id)
        except ValueError:
            raise KeyError(f"unknown participant {participant_id!r}") from None

    def customer_count(self, participant_id: str) -> int:
        i = self._participant_index(participant_id)
        count = (
            len(self._block(self._people_cuts, i))
            + len(self._block(self._merchant_cuts, i))
            + len(self._block(self._biller_cuts, i))
        )
        return count + (participant_id == self.profile.g2p_payer_participant_id)

    def customers(self, participant_id: str) -> Iterator[Customer]:
        """Every customer of one participant, people first, each with its aliases."""
        i = self._participant_index(participant_id)
        for person in self._block(self._people_cuts, i):
            yield self.person(person)
        for merchant in self._block(self._merchant_cuts, i):
            yield self.merchant(merchant)
        for biller in self._block(self._biller_cuts, i):
            yield self.biller(biller)
        if participant_id == self.profile.g2p_payer_participant_id:
            yield Customer(
                user_id=self.g2p_payer_user_id,
                participant_id=participant_id,
                kind=CustomerKind.GOVERNMENT,
                display_name="National Treasury",
                national_id=None,
                aliases=(),
            )

    g2p_payer_user_id = "g2p_treasury"

    def person(self, index: int) -> Customer:
        assert 0 <= index < self.profile.people, index
        first, last = self._person_names(index)
        return Customer(
            user_id=f"p{index}",
            participant_id=self.participant_ids[bisect_right(self._people_cuts, index)],
            kind=CustomerKind.PERSON,
            display_name=f"{first} {last}",
            national_id=self._national_id(index),
            aliases=tuple(
                Alias(kind=kind, value=self._person_alias(index, kind))
                for kind in self._person_alias_kinds(index)
            ),
        )

    def merchant(self, index: int) -> Customer:
        assert 0 <= index < self.profile.merchants, index
        p = bisect_right(self._merchant_cuts, index)
        h = _mix64(self._name_key ^ (index << 1) ^ 1)
        return Customer(
            user_id=f"m{index}",
            participant_id=self.participant_ids[p],
            kind=CustomerKind.MERCHANT,
            display_name=f"{_LAST_NAMES[h & 31]} {_TRADES[(h >> 5) & 7]}",
            national_id=None,
            aliases=tuple(
                Alias(kind=kind, value=self._merchant_alias(index, p, kind))
                for kind in (AliasKind.HANDLE, AliasKind.RANDOM)
            ),
        )

    def biller(self, index: int) -> Customer:
        assert 0 <= index < self.profile.billers, index
        p = bisect_right(self._biller_cuts, index)
        return Customer(
            user_id=f"b{index}",
            participant_id=self.participant_ids[p],
            kind=CustomerKind.BILLER,
            display_name=f"Utility {index} Ltd",
            national_id=None,
            aliases=(Alias(kind=AliasKind.HANDLE, value=self._biller_alias(index, p)),),
        )

    def _person_names(self, index: int) -> tuple[str, str]:
        h = _mix64(self._name_key ^ (index << 1))
        return _FIRST_NAMES[h & 31], _LAST_NAMES[(h >> 5) & 31]

    def _person_alias_kinds(self, index: int) -> tuple[AliasKind, ...]:
        h = _mix64(self._alias_key ^ index)
        kinds = tuple(
            kind
            for j, kind in enumerate(_ALIAS_KIND_ORDER)
            if ((h >> (16 * j)) & 0xFFFF) < self._alias_thresholds[j]
        )
        return kinds or (AliasKind.MSISDN,)

    def _person_alias(self, index: int, kind: AliasKind) -> str:
        if kind is AliasKind.MSISDN:
            digits = limits.MSISDN_SUBSCRIBER_DIGITS
            number = (index * _MSISDN_MULTIPLIER + self._msisdn_offset) % 10**digits
            return f"{self.profile.msisdn_prefix}{number:0{digits}d}"
        if kind is AliasKind.NATIONAL_ID:
            return self._national_id(index)
        first, last = self._person_names(index)
        if kind is AliasKind.EMAIL:
            domain = _EMAIL_DOMAINS[index % len(_EMAIL_DOMAINS)]
            return f"{first.lower()}.{last.lower()}.{index}@{domain}"
        if kind is AliasKind.HANDLE:
            domain = self._handle_domains[bisect_right(self._people_cuts, index)]
            return f"{first.lower()}{index}@{domain}"
        assert kind is AliasKind.RANDOM
        return self._random_key(index << 2)

    def _merchant_alias(self, index: int, participant_index: int, kind: AliasKind) -> str:
        if kind is AliasKind.HANDLE:
            return f"shop{index}@{self._handle_domains[participant_index]}"
        assert kind is AliasKind.RANDOM
        return self._random_key((index << 2) | 1)

    def _biller_alias(self, index: int, participant_index: int) -> str:
        return f"biller{index}@{self._handle_domains[participant_index]}"

    def _national_id(self, index: int) -> str:
        digits = limits.NATIONAL_ID_DIGITS
        number = (index * _NATIONAL_ID_MULTIPLIER + self._national_id_offset) % 10**digits
        return f"{number:0{digits}d}"

    def _random_key(self, key_index: int) -> str:
        """A UUID-v4-shaped key, as the directory issues for RANDOM aliases."""
        hi = _mix64(self._random_key_hi ^ key_index)
        lo = _mix64(self._random_key_lo ^ key_index)
        hi = (hi & ~0xF000) | 0x4000  # version 4
        lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000  # RFC 4122 variant
        h = f"{hi:016x}{lo:016x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def alias_kind_counts(self) -> dict[str, int]:
        """Directory aliases of each kind over the whole population (a pass over every
        person). National IDs are not among them: G2P reaches people through the mapper."""
        counts = dict.fromkeys((k.value for k in _ALIAS_KIND_ORDER), 0)
        for index in range(self.profile.people):
            for kind in self._person_alias_kinds(index):
                counts[kind.value] += 1
        counts[AliasKind.HANDLE.value] += self.profile.merchants + self.profile.billers
        counts[AliasKind.RANDOM.value] += self.profile.merchants
        return counts

    def payee_rank_index(self, use_case: UseCase, rank: int) -> int:
        """Index of the person/merchant/biller at popularity `rank` (1 = most popular)."""
        ranker = {
            UseCase.P2P: self._people_rank,
            UseCase.MERCHANT: self._merchant_rank,
            UseCase.BILL: self._biller_rank,
        }[use_case]
        assert ranker is not None, use_case
        return ranker.index_of_rank(rank)

    def payee_top_share(self, use_case: UseCase, top: int) -> float:
        """Exact probability that a payee of `use_case` is among its `top` most popular."""
        ranker = {
            UseCase.P2P: self._people_rank,
            UseCase.MERCHANT: self._merchant_rank,
            UseCase.BILL: self._biller_rank,
        }[use_case]
        assert ranker is not None, use_case
        return ranker.zipf.top_share(top)

    # --- traffic ------------------------------------------------------------------------

    def intents(self, worker_index: int = 0, worker_count: int = 1) -> Iterator[PaymentIntent]:
        """The run's payments in schedule order; worker k of n gets those with index % n == k.

        Every worker generates the whole sequence and keeps its share, so n workers offer
        exactly the payments one process would (the draws of a payment depend on all the
        draws before it).
        """
        assert worker_count >= 1
        assert 0 <= worker_index < worker_count
        profile = self.profile
        arrivals = random.Random(f"ponte-population:{self.seed}:arrivals")
        bodies = random.Random(f"ponte-population:{self.seed}:bodies")
        unit = bodies.random
        gauss = bodies.gauss
        expovariate = arrivals.expovariate
        poisson = profile.arrivals == "poisson"

        cases = [u for u in profile.use_cases if u.share > 0.0]
        case_cum = list(accumulate(u.share for u in cases))
        case_cum[-1] = math.inf  # rounding in the shares must never index past the end
        scale = 10**profile.currency_exponent
        case_params = [
            (u.use_case, math.log(u.median_major * scale), u.sigma, u.cap_major * scale)
            for u in cases
        ]
        people = profile.people
        people_cuts = self._people_cuts
        merchant_cuts = self._merchant_cuts
        biller_cuts = self._biller_cuts
        pids = self.participant_ids
        people_rank = self._people_rank
        merchant_rank = self._merchant_rank
        biller_rank = self._biller_rank
        alias_kinds = self._person_alias_kinds
        person_alias = self._person_alias
        currency = profile.currency
        g2p_pid = profile.g2p_payer_participant_id
        g2p_user = self.g2p_payer_user_id
        merchant_kinds = (AliasKind.HANDLE, AliasKind.RANDOM)

        cum = self._volume_cum
        seconds = len(cum) - 1
        second = 0
        target = 0.0 if poisson else -0.5
        index = 0
        while True:
            target += expovariate(1.0) if poisson else 1.0
            while second < seconds and cum[second + 1] <= target:
                second += 1
            if second >= seconds:
                return
            offset_s = second + (target - cum[second]) / (cum[second + 1] - cum[second])

            use_case, mu, sigma, cap_minor = case_params[bisect_right(case_cum, unit())]
            if use_case is UseCase.G2P:
                payer_pid = g2p_pid
                payer_user = g2p_user
            else:
                payer = int(unit() * people)
                payer_pid = pids[bisect_right(people_cuts, payer)]
                payer_user = f"p{payer}"
            if use_case is UseCase.P2P:
                payee = people_rank.draw(unit)
                while payee == payer:
                    payee = people_rank.draw(unit)
                kinds = alias_kinds(payee)
                kind = kinds[int(unit() * len(kinds))]
                payee_alias = person_alias(payee, kind)
                payee_pid = pids[bisect_right(people_cuts, payee)]
            elif use_case is UseCase.MERCHANT:
                payee = merchant_rank.draw(unit)
                p = bisect_right(merchant_cuts, payee)
                kind = merchant_kinds[int(unit() * 2)]
                payee_alias = self._merchant_alias(payee, p, kind)
                payee_pid = pids[p]
            elif use_case is UseCase.BILL:
                payee = biller_rank.draw(unit)
                p = bisect_right(biller_cuts, payee)
                kind = AliasKind.HANDLE
                payee_alias = self._biller_alias(payee, p)
                payee_pid = pids[p]
            else:
                payee = int(unit() * people)
                kind = AliasKind.NATIONAL_ID
                payee_alias = self._national_id(payee)
                payee_pid = pids[bisect_right(people_cuts, payee)]

            amount_minor = int(math.exp(gauss(mu, sigma)) + 0.5)
            if amount_minor < 1:
                amount_minor = 1
            elif amount_minor > cap_minor:
                amount_minor = cap_minor

            if index % worker_count == worker_index:
                yield PaymentIntent(
                    index=index,
                    offset_s=offset_s,
                    use_case=use_case,
                    payer_participant_id=payer_pid,
                    payer_user_id=payer_user,
                    payee_alias_kind=kind,
                    payee_alias=payee_alias,
                    payee_participant_id=payee_pid,
                    amount_minor=amount_minor,
                    currency=currency,
                )
            index += 1

    def __iter__(self) -> Iterator[PaymentIntent]:
        return self.intents()
