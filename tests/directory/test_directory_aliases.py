"""Alias normalisation and validation: canonical forms, checksums, typed refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directory_helpers import cpf
from switch.directory import limits
from switch.directory.aliases import (
    AliasRules,
    br_cnpj_valid,
    br_cpf_valid,
    iban_valid,
    issue_random_key,
    luhn_valid,
    mask_initials,
    verhoeff_valid,
)
from switch.directory.config import DirectoryConfig, NationalIdFormat
from switch.directory.types import AliasType, DirectoryResult, Rejection

R = DirectoryResult
T = AliasType
RULES = AliasRules(DirectoryConfig())

VALID = [
    (T.MSISDN, "+5511987654321", "+5511987654321"),
    (T.MSISDN, " +55 (11) 98765-4321 ", "+5511987654321"),
    (T.MSISDN, "005511987654321", "+5511987654321"),
    (T.MSISDN, "+6834002", "+6834002"),  # 7 digits: Niue
    (T.EMAIL, " Maria.Silva@Example.COM ", "maria.silva@example.com"),
    (T.EMAIL, "a+tag@sub.example.org", "a+tag@sub.example.org"),
    (T.NATIONAL_ID, "529.982.247-25", "BR:52998224725"),
    (T.NATIONAL_ID, "br:52998224725", "BR:52998224725"),
    (T.NATIONAL_ID, "ZA:8001015009087", "ZA:8001015009087"),
    (T.NATIONAL_ID, "IN:2341 2341 2346", "IN:234123412346"),
    (T.HANDLE, "Maria@NuBank", "maria@nubank"),
    (T.HANDLE, "j.doe_1@wallet.co", "j.doe_1@wallet.co"),
    (T.RANDOM, "123E4567-E89B-42D3-A456-426614174000", "123e4567-e89b-42d3-a456-426614174000"),
    (T.ACCOUNT, "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
    (T.ACCOUNT, "de89370400440532013000", "DE89370400440532013000"),
    (T.ACCOUNT, "bank-a:0012-3456", "bank-a:00123456"),
]


@pytest.mark.parametrize(("alias_type", "raw", "canonical"), VALID)
def test_valid_aliases_normalise_to_one_canonical_form(alias_type, raw, canonical):
    assert RULES.alias_value(alias_type, raw) == canonical
    # Normalising the canonical form again changes nothing.
    assert RULES.alias_value(alias_type, canonical) == canonical


INVALID = [
    (T.MSISDN, "", R.FIELD_EMPTY),
    (T.MSISDN, "   ", R.FIELD_EMPTY),
    (T.MSISDN, "+1234567890123456", R.FIELD_TOO_LONG),  # 16 digits
    (T.MSISDN, "5511987654321", R.FIELD_MALFORMED),  # no country code marker
    (T.MSISDN, "+0511987654321", R.FIELD_MALFORMED),
    (T.MSISDN, "+123456", R.FIELD_MALFORMED),  # 6 digits
    (T.MSISDN, "+55 11 9876x4321", R.FIELD_MALFORMED),
    (T.MSISDN, "+５５１１９８７６５４３２１", R.FIELD_MALFORMED),  # full-width digits
    (T.MSISDN, "9" * (limits.ALIAS_VALUE_INPUT_BYTES_MAX + 1), R.FIELD_TOO_LONG),
    (T.EMAIL, "no-at-sign.example.com", R.FIELD_MALFORMED),
    (T.EMAIL, "a@b", R.FIELD_MALFORMED),
    (T.EMAIL, "a..b@example.com", R.FIELD_MALFORMED),
    (T.EMAIL, "josé@example.com", R.FIELD_MALFORMED),
    (T.EMAIL, "x" * 65 + "@example.com", R.FIELD_TOO_LONG),
    (T.EMAIL, "a@" + "b" * 250 + ".com", R.FIELD_TOO_LONG),
    (T.NATIONAL_ID, "529.982.247-26", R.FIELD_CHECKSUM_INVALID),
    (T.NATIONAL_ID, "111.111.111-11", R.FIELD_CHECKSUM_INVALID),
    (T.NATIONAL_ID, "5299822472", R.FIELD_MALFORMED),  # 10 digits
    (T.NATIONAL_ID, "XX:12345", R.FIELD_COUNTRY_UNKNOWN),
    (T.NATIONAL_ID, "B1:12345", R.FIELD_MALFORMED),
    (T.NATIONAL_ID, "ZA:8001015009088", R.FIELD_CHECKSUM_INVALID),
    (T.NATIONAL_ID, "IN:234123412347", R.FIELD_CHECKSUM_INVALID),
    (T.NATIONAL_ID, "1" * (limits.NATIONAL_ID_BYTES_MAX + 1), R.FIELD_TOO_LONG),
    (T.HANDLE, "maria", R.FIELD_MALFORMED),
    (T.HANDLE, "-maria@bank", R.FIELD_MALFORMED),
    (T.HANDLE, "m" * 65 + "@bank", R.FIELD_TOO_LONG),
    (T.RANDOM, "123e4567-e89b-12d3-a456-426614174000", R.FIELD_MALFORMED),  # version 1
    (T.RANDOM, "not-a-uuid", R.FIELD_MALFORMED),
    (T.RANDOM, "123e4567-e89b-42d3-a456-4266141740000", R.FIELD_TOO_LONG),
    (T.ACCOUNT, "GB82WEST12345698765433", R.FIELD_CHECKSUM_INVALID),
    (T.ACCOUNT, "GB82", R.FIELD_MALFORMED),
    (T.ACCOUNT, "GB82" + "1" * 31, R.FIELD_TOO_LONG),
    (T.ACCOUNT, "bank-a:12", R.FIELD_MALFORMED),  # local pattern wants 4..20 digits
    (T.ACCOUNT, "bank a:12345", R.FIELD_MALFORMED),  # bad participant id
    (T.ACCOUNT, "bank-a:" + "1" * 35, R.FIELD_TOO_LONG),
]


@pytest.mark.parametrize(("alias_type", "raw", "result"), INVALID)
def test_invalid_aliases_get_a_typed_refusal_naming_the_field(alias_type, raw, result):
    refused = RULES.alias_value(alias_type, raw, field="alias_value")
    assert refused == Rejection(result=result, field="alias_value")


def test_refusals_never_echo_the_value():
    refused = RULES.alias_value(T.NATIONAL_ID, "529.982.247-26")
    assert isinstance(refused, Rejection)
    assert "529" not in repr(refused)


def test_unknown_alias_type_is_refused():
    assert RULES.alias_type(99) == Rejection(result=R.FIELD_TYPE_UNKNOWN, field="alias_type")
    assert RULES.alias_type(0) == Rejection(result=R.FIELD_TYPE_UNKNOWN, field="alias_type")
    assert RULES.alias_type(3) is T.NATIONAL_ID


def test_country_formats_are_configurable():
    config = DirectoryConfig(
        national_id_formats={"KE": NationalIdFormat(pattern=r"[0-9]{8}")},
        national_id_country_default="KE",
    )
    rules = AliasRules(config)
    assert rules.national_id("1234 5678", "id") == "KE:12345678"
    assert rules.national_id("BR:52998224725", "id") == Rejection(
        result=R.FIELD_COUNTRY_UNKNOWN, field="id"
    )


def test_checksum_algorithms_on_known_vectors():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert verhoeff_valid("2363") and not verhoeff_valid("2364")
    assert br_cpf_valid("52998224725") and not br_cpf_valid("52998224724")
    assert not br_cpf_valid("00000000000")
    assert br_cnpj_valid("11222333000181") and not br_cnpj_valid("11222333000182")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765423")


@given(st.integers(min_value=0, max_value=10**9 - 1))
def test_generated_cpfs_are_valid_and_idempotent(seed):
    value = RULES.national_id(cpf(seed), "id")
    assert value == "BR:" + cpf(seed)
    assert RULES.national_id(value, "id") == value


@given(st.text(max_size=80))
def test_normalisation_never_raises_and_is_idempotent(raw):
    for alias_type in T:
        value = RULES.alias_value(alias_type, raw)
        if isinstance(value, Rejection):
            assert value.field == "alias_value"
            assert value.result in (R.FIELD_EMPTY, R.FIELD_TOO_LONG, R.FIELD_MALFORMED,
                                    R.FIELD_CHECKSUM_INVALID, R.FIELD_COUNTRY_UNKNOWN)
        else:
            assert RULES.alias_value(alias_type, value) == value
            assert len(value.encode()) <= limits.ALIAS_KEY_BYTES_MAX


@given(st.binary(min_size=16, max_size=16))
def test_issued_random_keys_are_valid_uuid4(random16):
    key = issue_random_key(random16)
    assert RULES.alias_value(T.RANDOM, key) == key


def test_display_names_keep_initials_only():
    assert RULES.display_initials("John Doe") == "JD"
    assert mask_initials("JD") == "J*** D***"
    assert RULES.display_initials("  maria  da silva ") == "MDS"
    assert RULES.display_initials("Ærøskøbing ølværk") == "ÆØ"
    assert RULES.display_initials("a b c d e f g h i j") == "ABCDEFGH"
    assert RULES.display_initials("") == Rejection(result=R.FIELD_EMPTY, field="display_name")
    assert RULES.display_initials("--- ...") == Rejection(result=R.FIELD_MALFORMED,
                                                          field="display_name")
    assert RULES.display_initials("bad\x00name") == Rejection(result=R.FIELD_MALFORMED,
                                                              field="display_name")
    assert RULES.display_initials("x" * 141) == Rejection(result=R.FIELD_TOO_LONG,
                                                          field="display_name")


def test_participant_and_account_fields():
    assert RULES.participant_id("bank-a", "p") == "bank-a"
    assert RULES.participant_id("", "p") == Rejection(result=R.FIELD_EMPTY, field="p")
    assert RULES.participant_id("b" * 33, "p") == Rejection(result=R.FIELD_TOO_LONG, field="p")
    assert RULES.participant_id("bank\x1fa", "p") == Rejection(result=R.FIELD_MALFORMED,
                                                              field="p")
    assert RULES.account_ref("acc:1/2", "a") == "acc:1/2"
    assert RULES.account_ref("acc 1", "a") == Rejection(result=R.FIELD_MALFORMED, field="a")
    assert RULES.payer_user_id("u" * 65) == Rejection(result=R.FIELD_TOO_LONG,
                                                      field="payer_user_id")
