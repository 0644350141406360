"""Bad input gets a typed refusal naming the field, and nothing is written.

Every case runs on every backend; the store's tables are dumped before and after and must
be identical.
"""

from __future__ import annotations

import msgspec
import pytest

from directory_helpers import NOW_NS, cpf, dump_store, msisdn, registration
from switch.directory import limits
from switch.directory.types import (
    AliasType,
    ClaimAction,
    ClaimType,
    DirectoryResult,
    MapperLinkRequest,
    OpenClaim,
    RegisterAlias,
    Rejection,
    ResolvedAlias,
    UpdateAlias,
)

R = DirectoryResult
T = AliasType
LONG = "9" * (limits.ALIAS_VALUE_INPUT_BYTES_MAX + 1)

REGISTRATIONS = [
    ("unknown type", registration(alias_type=99, alias_value="x"),
     R.FIELD_TYPE_UNKNOWN, "alias_type"),
    ("malformed alias", registration(alias_value="+55 11 not-a-number"),
     R.FIELD_MALFORMED, "alias_value"),
    ("empty alias", registration(alias_value="  "), R.FIELD_EMPTY, "alias_value"),
    ("over-long alias", registration(alias_value=LONG), R.FIELD_TOO_LONG, "alias_value"),
    ("over-long e-mail", registration(alias_type=T.EMAIL, alias_value="a" * 250 + "@b.co"),
     R.FIELD_TOO_LONG, "alias_value"),
    ("IBAN checksum", registration(alias_type=T.ACCOUNT, alias_value="GB82WEST12345698765433"),
     R.FIELD_CHECKSUM_INVALID, "alias_value"),
    ("national ID alias checksum", registration(alias_type=T.NATIONAL_ID,
                                                alias_value="529.982.247-26"),
     R.FIELD_CHECKSUM_INVALID, "alias_value"),
    ("client-chosen random key", registration(
        alias_type=T.RANDOM, alias_value="123e4567-e89b-42d3-a456-426614174000"),
     R.RANDOM_KEY_CHOSEN_BY_CLIENT, "alias_value"),
    ("owner ID checksum", registration(owner="52998224726"),
     R.FIELD_CHECKSUM_INVALID, "owner_national_id"),
    ("owner ID country", registration(owner="XX:123456"),
     R.FIELD_COUNTRY_UNKNOWN, "owner_national_id"),
    ("owner ID missing", registration(owner=""), R.FIELD_EMPTY, "owner_national_id"),
    ("owner kind", registration(owner_kind=3), R.FIELD_TYPE_UNKNOWN, "owner_kind"),
    ("participant", registration(participant_id=""), R.FIELD_EMPTY, "participant_id"),
    ("participant too long", registration(participant_id="p" * 33),
     R.FIELD_TOO_LONG, "participant_id"),
    ("account ref", registration(account_ref="acc 1"), R.FIELD_MALFORMED, "account_ref"),
    ("display name", registration(display_name=" "), R.FIELD_EMPTY, "display_name"),
    ("someone else's ID as alias", registration(alias_type=T.NATIONAL_ID,
                                                alias_value=cpf(2), owner=cpf(3)),
     R.NATIONAL_ID_NOT_OWNERS, "alias_value"),
]


@pytest.mark.parametrize(("case", "request_", "result", "field"), REGISTRATIONS,
                         ids=[case[0] for case in REGISTRATIONS])
async def test_bad_registrations_write_nothing(directory, case, request_, result, field):
    await directory.register(registration(seed=500), NOW_NS)  # something to keep intact
    before = await dump_store(directory.store)
    answer = await directory.register(request_, NOW_NS)
    assert answer == Rejection(result=result, field=field)
    assert await dump_store(directory.store) == before


async def test_registration_beyond_the_caps_writes_nothing(directory):
    owner = cpf(4)
    for n in range(5):
        await directory.register(registration(seed=10 + n, owner=owner, account_ref=f"a{n}"),
                                 NOW_NS)
    before = await dump_store(directory.store)
    answer = await directory.register(registration(seed=20, owner=owner), NOW_NS)
    assert answer == Rejection(result=R.OWNER_CAP_REACHED, field="owner_national_id")
    summary = await directory.bulk_import(
        [registration(seed=21 + n, owner=owner) for n in range(3)], NOW_NS)
    assert summary.rejected == 3 and summary.registered == 0
    assert await dump_store(directory.store) == before


async def test_bad_updates_and_deletes_write_nothing(directory):
    await directory.register(registration(), NOW_NS)
    before = await dump_store(directory.store)
    cases = [
        (directory.update(UpdateAlias(alias_type=T.MSISDN, alias_value=msisdn(1),
                                      participant_id="bank-a", account_ref="bad ref"), NOW_NS),
         R.FIELD_MALFORMED, "account_ref"),
        (directory.update(UpdateAlias(alias_type=T.MSISDN, alias_value=msisdn(1),
                                      participant_id="bank-a", display_name="\x00"), NOW_NS),
         R.FIELD_MALFORMED, "display_name"),
        (directory.update(UpdateAlias(alias_type=T.MSISDN, alias_value=msisdn(2),
                                      participant_id="bank-a", account_ref="acc-2"), NOW_NS),
         R.ALIAS_NOT_FOUND, "alias_value"),
        (directory.update(UpdateAlias(alias_type=8, alias_value=msisdn(1),
                                      participant_id="bank-a"), NOW_NS),
         R.FIELD_TYPE_UNKNOWN, "alias_type"),
        (directory.delete(T.MSISDN, "12", "bank-a", NOW_NS), R.FIELD_MALFORMED, "alias_value"),
        (directory.delete(T.MSISDN, msisdn(1), "", NOW_NS), R.FIELD_EMPTY, "participant_id"),
        (directory.delete(T.MSISDN, msisdn(1), "bank-b", NOW_NS),  # not bank-b's
         R.ALIAS_NOT_FOUND, "alias_value"),
    ]
    for call, result, field in cases:
        assert await call == Rejection(result=result, field=field)
    assert await dump_store(directory.store) == before


async def test_bad_resolves_are_refused_before_any_charge(directory):
    await directory.register(registration(), NOW_NS)
    before = await dump_store(directory.store)
    cases = [
        ((9, msisdn(1), "bank-z", "u"), R.FIELD_TYPE_UNKNOWN, "alias_type"),
        ((T.MSISDN, "hello", "bank-z", "u"), R.FIELD_MALFORMED, "alias_value"),
        ((T.MSISDN, LONG, "bank-z", "u"), R.FIELD_TOO_LONG, "alias_value"),
        ((T.MSISDN, msisdn(1), "bank z", "u"), R.FIELD_MALFORMED, "payer_participant_id"),
        ((T.MSISDN, msisdn(1), "bank-z", ""), R.FIELD_EMPTY, "payer_user_id"),
        ((T.NATIONAL_ID, "52998224726", "bank-z", "u"), R.FIELD_CHECKSUM_INVALID,
         "alias_value"),
    ]
    for _ in range(30):  # 180 refusals; a charged miss would have emptied the bucket
        for args, result, field in cases:
            assert await directory.resolve(*args, NOW_NS) == Rejection(result=result,
                                                                       field=field)
    assert isinstance(await directory.resolve(T.MSISDN, msisdn(1), "bank-z", "u", NOW_NS),
                      ResolvedAlias)
    assert await dump_store(directory.store) == before


async def test_bad_claims_and_links_write_nothing(directory):
    await directory.register(registration(owner=cpf(8), participant_id="donor"), NOW_NS)
    before = await dump_store(directory.store)

    def claim(**changes):
        fields = dict(claim_type=ClaimType.PORTABILITY, alias_type=T.MSISDN,
                      alias_value=msisdn(1), claimer_participant_id="claimer",
                      claimer_account_ref="acc-2", claimer_owner_national_id=cpf(8),
                      claimer_display_name="John Doe")
        fields.update(changes)
        return OpenClaim(**fields)

    cases = [
        (claim(claim_type=3), R.FIELD_TYPE_UNKNOWN, "claim_type"),
        (claim(alias_value="x"), R.FIELD_MALFORMED, "alias_value"),
        (claim(claimer_account_ref=""), R.FIELD_EMPTY, "claimer_account_ref"),
        (claim(claimer_owner_national_id="1"), R.FIELD_MALFORMED, "claimer_owner_national_id"),
        (claim(claimer_owner_national_id=cpf(9)), R.CLAIM_OWNER_MISMATCH,
         "claimer_owner_national_id"),
        (claim(alias_value=msisdn(2)), R.ALIAS_NOT_FOUND, "alias_value"),
    ]
    for request_, result, field in cases:
        answer, notices = await directory.open_claim(request_, NOW_NS)
        assert answer == Rejection(result=result, field=field)
        assert notices == []
    answer, _ = await directory.claim_action("0" * 32, ClaimAction.CONFIRM, "donor", NOW_NS)
    assert answer.result is R.CLAIM_NOT_FOUND
    answer, _ = await directory.claim_action("short", ClaimAction.CONFIRM, "donor", NOW_NS)
    assert answer == Rejection(result=R.FIELD_MALFORMED, field="claim_id")
    for link, result, field in [
        (MapperLinkRequest(id="52998224726", participant_id="bank-a", account_ref="a"),
         R.FIELD_CHECKSUM_INVALID, "id"),
        (MapperLinkRequest(id=cpf(1), participant_id="bank a", account_ref="a"),
         R.FIELD_MALFORMED, "participant_id"),
        (MapperLinkRequest(id=cpf(1), participant_id="bank-a", account_ref="a" * 65),
         R.FIELD_TOO_LONG, "account_ref"),
    ]:
        answer, notices = await directory.mapper_link(link, NOW_NS)
        assert answer == Rejection(result=result, field=field) and notices == []
    assert (await directory.mapper_unlink(cpf(1), "bank-a")).result is R.MAPPER_ID_NOT_LINKED
    assert await dump_store(directory.store) == before


def test_unknown_wire_fields_are_refused_by_the_decoder():
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"alias_type":1,"participant_id":"p","account_ref":"a",'
                            b'"owner_national_id":"1","display_name":"n","extra":1}',
                            type=RegisterAlias)
