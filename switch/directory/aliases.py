"""Alias normalisation and validation: one canonical spelling per alias, or a typed refusal.

Every check returns either the normalised value or a `Rejection` naming the field; nothing
here raises for bad input, reads the clock, or touches I/O. A refusal never carries the
value it refused (it may be a national ID).

Canonical forms:
    MSISDN       "+" and 7..15 digits (E.164); spaces, dashes, dots, brackets and a leading
                 "00" are accepted on input.
    EMAIL        lower-cased, ASCII, at most 254 bytes (internationalised domains must come
                 as punycode). The local part is lower-cased too, as Pix does: two spellings
                 of one mailbox must not become two aliases.
    NATIONAL_ID  "CC:VALUE": country from the "CC:" prefix or the scheme default, separators
                 removed, upper-cased, matched against the country's pattern and checksum.
                 Stored only as an identity token (see `identity.py`).
    HANDLE       "name@provider", lower-cased.
    RANDOM       a canonical lower-case UUID version 4, issued by the directory.
    ACCOUNT      an IBAN (mod-97 checked, no spaces, upper-case) or a local account number
                 "<participant_id>:<number>" matched against the scheme's local pattern.
"""

from __future__ import annotations

import re

from switch.directory import limits
from switch.directory.config import DirectoryConfig
from switch.directory.types import AliasType, DirectoryResult, OwnerKind, Rejection

R = DirectoryResult

_MSISDN_CANONICAL = re.compile(r"\+[1-9][0-9]*")
_MSISDN_STRIP = str.maketrans("", "", " -().\t")
_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_HANDLE = re.compile(
    r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?@[a-z0-9](?:[a-z0-9.-]{0,62}[a-z0-9])?"
)
_RANDOM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_PARTICIPANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ACCOUNT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
_ID_STRIP = str.maketrans("", "", " .-/\t")
_ACCOUNT_STRIP = str.maketrans("", "", " -")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _too_long(value: str, bytes_max: int) -> bool:
    # len() counts characters, each at least one byte: only non-ASCII text needs encoding.
    if len(value) > bytes_max:
        return True
    return not value.isascii() and len(value.encode("utf-8")) > bytes_max


# --- checksums --------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6), (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4), (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2), (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_valid(digits: str) -> bool:
    if not digits.isdigit() or not digits.isascii():
        return False
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][ord(char) - 48]]
    return check == 0


def _mod11_digit(digits: str, weights: tuple[int, ...]) -> int:
    remainder = sum((ord(c) - 48) * w for c, w in zip(digits, weights)) % 11
    return 0 if remainder < 2 else 11 - remainder


def br_cpf_valid(digits: str) -> bool:
    if len(digits) != 11 or not digits.isdigit() or not digits.isascii():
        return False
    if digits == digits[0] * 11:  # 000.000.000-00 etc. pass the arithmetic but are not issued
        return False
    first = _mod11_digit(digits[:9], tuple(range(10, 1, -1)))
    second = _mod11_digit(digits[:10], tuple(range(11, 1, -1)))
    return digits[9] == str(first) and digits[10] == str(second)


def br_cnpj_valid(digits: str) -> bool:
    if len(digits) != 14 or not digits.isdigit() or not digits.isascii():
        return False
    if digits == digits[0] * 14:
        return False
    first = _mod11_digit(digits[:12], (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2))
    second = _mod11_digit(digits[:13], (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2))
    return digits[12] == str(first) and digits[13] == str(second)


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check of a canonical IBAN (upper-case, no spaces)."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


CHECKSUM_FUNCTIONS = {
    "none": lambda value: True,
    "luhn": luhn_valid,
    "verhoeff": verhoeff_valid,
    "br_cpf": br_cpf_valid,
    "br_cnpj": br_cnpj_valid,
}


def issue_random_key(random16: bytes) -> str:
    """A RANDOM alias from 16 random bytes: a canonical UUID version 4 (RFC 9562)."""
    assert len(random16) == 16
    raw = bytearray(random16)
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# --- the rules, compiled once per configuration -----------------------------------------


class AliasRules:
    """Validation rules compiled from a `DirectoryConfig`. Every method answers the
    normalised value or a `Rejection` naming `field`."""

    def __init__(self, config: DirectoryConfig) -> None:
        self.config = config
        self._national = {
            country: (re.compile(fmt.pattern), CHECKSUM_FUNCTIONS[fmt.checksum])
            for country, fmt in config.national_id_formats.items()
        }
        self._local_account = re.compile(config.local_account_pattern)

    # Aliases ------------------------------------------------------------------------------

    def alias_type(self, alias_type: int, field: str = "alias_type") -> AliasType | Rejection:
        try:
            return AliasType(alias_type)
        except ValueError:
            return Rejection(result=R.FIELD_TYPE_UNKNOWN, field=field)

    def alias_value(
        self, alias_type: AliasType, raw: str, field: str = "alias_value"
    ) -> str | Rejection:
        """Normalise `raw` as an alias of `alias_type` (already a member of AliasType)."""
        if not isinstance(raw, str):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        if alias_type is AliasType.MSISDN and _MSISDN_CANONICAL.fullmatch(raw) and (
            limits.MSISDN_DIGITS_MIN < len(raw) <= limits.MSISDN_DIGITS_MAX + 1
        ):
            return raw  # the hot path: payers mostly send the canonical form already
        value = raw.strip()
        if not value:
            return Rejection(result=R.FIELD_EMPTY, field=field)
        if _too_long(value, limits.ALIAS_VALUE_INPUT_BYTES_MAX):
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if alias_type is AliasType.MSISDN:
            return self._msisdn(value, field)
        if alias_type is AliasType.EMAIL:
            return self._email(value, field)
        if alias_type is AliasType.NATIONAL_ID:
            return self.national_id(value, field)
        if alias_type is AliasType.HANDLE:
            return self._handle(value, field)
        if alias_type is AliasType.RANDOM:
            return self._random(value, field)
        assert alias_type is AliasType.ACCOUNT
        return self._account(value, field)

    def _msisdn(self, value: str, field: str) -> str | Rejection:
        value = value.translate(_MSISDN_STRIP)
        if value.startswith("00"):
            value = "+" + value[2:]
        digits = value[1:]
        if value[:1] == "+" and len(digits) > limits.MSISDN_DIGITS_MAX and digits.isdigit():
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if not _MSISDN_CANONICAL.fullmatch(value) or len(digits) < limits.MSISDN_DIGITS_MIN:
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        return value

    def _email(self, value: str, field: str) -> str | Rejection:
        if not value.isascii():
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        value = value.lower()
        if len(value) > limits.EMAIL_BYTES_MAX:
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        local, at, _domain = value.rpartition("@")
        if len(local) > limits.EMAIL_LOCAL_BYTES_MAX:
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if not at or not _EMAIL.fullmatch(value):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        return value

    def _handle(self, value: str, field: str) -> str | Rejection:
        if not value.isascii():
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        value = value.lower()
        name, at, provider = value.partition("@")
        if (len(name) > limits.HANDLE_NAME_BYTES_MAX
                or len(provider) > limits.HANDLE_PROVIDER_BYTES_MAX):
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if not at or not _HANDLE.fullmatch(value):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        return value

    def _random(self, value: str, field: str) -> str | Rejection:
        value = value.lower()
        if len(value) > limits.RANDOM_KEY_CHARS:
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if not _RANDOM.fullmatch(value):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        return value

    def _account(self, value: str, field: str) -> str | Rejection:
        if ":" in value:
            participant_id, _, number = value.partition(":")
            checked = self.participant_id(participant_id, field)
            if isinstance(checked, Rejection):
                return checked
            number = number.translate(_ACCOUNT_STRIP)
            if not number:
                return Rejection(result=R.FIELD_MALFORMED, field=field)
            if len(number) > limits.LOCAL_ACCOUNT_NUMBER_BYTES_MAX:
                return Rejection(result=R.FIELD_TOO_LONG, field=field)
            if not number.isascii() or not self._local_account.fullmatch(number):
                return Rejection(result=R.FIELD_MALFORMED, field=field)
            return f"{participant_id}:{number}"
        iban = value.replace(" ", "").upper()
        if len(iban) > limits.IBAN_CHARS_MAX:
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if not iban.isascii() or not _IBAN.fullmatch(iban):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        if not iban_valid(iban):
            return Rejection(result=R.FIELD_CHECKSUM_INVALID, field=field)
        return iban

    def national_id(self, raw: str, field: str) -> str | Rejection:
        """Normalise a national ID to "CC:VALUE". The caller must not keep the result
        beyond computing the identity token."""
        if not isinstance(raw, str):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        value = raw.strip()
        if not value:
            return Rejection(result=R.FIELD_EMPTY, field=field)
        if _too_long(value, limits.NATIONAL_ID_BYTES_MAX):
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if ":" in value:
            country, _, number = value.partition(":")
            country = country.strip().upper()
            if not _COUNTRY.fullmatch(country):
                return Rejection(result=R.FIELD_MALFORMED, field=field)
        else:
            country, number = self.config.national_id_country_default, value
        rules = self._national.get(country)
        if rules is None:
            return Rejection(result=R.FIELD_COUNTRY_UNKNOWN, field=field)
        pattern, checksum = rules
        number = number.translate(_ID_STRIP).upper()
        if not number or not number.isascii() or not pattern.fullmatch(number):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        if not checksum(number):
            return Rejection(result=R.FIELD_CHECKSUM_INVALID, field=field)
        return f"{country}:{number}"

    # Other fields -------------------------------------------------------------------------

    def owner_kind(self, owner_kind: int, field: str = "owner_kind") -> OwnerKind | Rejection:
        try:
            return OwnerKind(owner_kind)
        except ValueError:
            return Rejection(result=R.FIELD_TYPE_UNKNOWN, field=field)

    def participant_id(self, value: str, field: str) -> str | Rejection:
        return _token_field(value, field, limits.PARTICIPANT_ID_BYTES_MAX, _PARTICIPANT_ID)

    def account_ref(self, value: str, field: str) -> str | Rejection:
        return _token_field(value, field, limits.ACCOUNT_REF_BYTES_MAX, _ACCOUNT_REF)

    def payer_user_id(self, value: str, field: str = "payer_user_id") -> str | Rejection:
        if not isinstance(value, str) or not value:
            return Rejection(result=R.FIELD_EMPTY, field=field)
        if _too_long(value, limits.PAYER_USER_ID_BYTES_MAX):
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if not value.isprintable():  # control characters, line breaks
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        return value

    def display_initials(self, name: str, field: str = "display_name") -> str | Rejection:
        """The initials kept for a display name ("John Doe" -> "JD"). The name itself is
        never stored: the masked form "J*** D***" is rebuilt from the initials."""
        if not isinstance(name, str):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        name = name.strip()
        if not name:
            return Rejection(result=R.FIELD_EMPTY, field=field)
        if _too_long(name, limits.DISPLAY_NAME_BYTES_MAX):
            return Rejection(result=R.FIELD_TOO_LONG, field=field)
        if _CONTROL.search(name):
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        initials = []
        for word in name.split():
            for char in word:
                if char.isalnum():
                    initials.append(char.upper()[0])
                    break
            if len(initials) == limits.DISPLAY_NAME_WORDS_MAX:
                break
        if not initials:
            return Rejection(result=R.FIELD_MALFORMED, field=field)
        return "".join(initials)


def _token_field(value: str, field: str, bytes_max: int, pattern: re.Pattern) -> str | Rejection:
    if not isinstance(value, str) or not value:
        return Rejection(result=R.FIELD_EMPTY, field=field)
    if _too_long(value, bytes_max):
        return Rejection(result=R.FIELD_TOO_LONG, field=field)
    if not value.isascii() or not pattern.fullmatch(value):
        return Rejection(result=R.FIELD_MALFORMED, field=field)
    return value


def mask_initials(initials: str) -> str:
    """"JD" -> "J*** D***": the only form of a name the directory ever hands out."""
    return " ".join(initial + "***" for initial in initials)
