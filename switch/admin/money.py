"""Amounts for people: integer minor units shown with, and typed in, their currency's
ISO 4217 exponent.

The switch only ever holds integers of minor units. `format_minor` shows them (the
console's templates); `parse_major` reads what an operator typed into a console form in
the currency's units ("1,234.56" BRL) into exact minor units, refusing anything it cannot
read exactly. It must never turn an amount into a float.
"""

from __future__ import annotations

import re

# The exponents live with the core, so connectors that speak decimal amounts use the same.
from switch.core.money import EXPONENT_DEFAULT, EXPONENTS, exponent  # noqa: E402,F401


def format_minor(amount_minor: int, currency: str, with_code: bool = True) -> str:
    """12345, "BRL" -> "123.45 BRL"; 12345, "JPY" -> "12,345 JPY"; negatives keep the sign.
    Integer arithmetic only."""
    digits = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    magnitude = -amount_minor if amount_minor < 0 else amount_minor
    whole, fraction = divmod(magnitude, 10 ** digits) if digits else (magnitude, 0)
    text = f"{sign}{whole:,}"
    if digits:
        text += f".{fraction:0{digits}d}"
    return f"{text} {currency}" if with_code else text


_MAJOR = re.compile(r"^(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?$", re.ASCII)


def parse_major(text: str, currency: str) -> int:
    """"1,234.56", "BRL" -> 123456. Digits with optional thousands commas and at most the
    currency's exponent of decimals; ValueError for anything else (a sign, an exponent,
    too many decimals, non-ASCII digits). Integer arithmetic only."""
    match = _MAJOR.match(text.strip())
    if match is None:
        raise ValueError(f"not an amount: {text[:40]!r}")
    whole, fraction = match.group(1).replace(",", ""), match.group(2) or ""
    digits = exponent(currency)
    if len(fraction) > digits:
        raise ValueError(f"{currency} has {digits} decimal places")
    return int(whole) * 10 ** digits + int(fraction.ljust(digits, "0") or 0)
