"""Amounts for people: integer minor units shown with their currency's ISO 4217 exponent.

The switch only ever holds integers of minor units; this module is display only (the
console's templates and the API's `exponent` fields). It must never turn an amount into a
float, and never be used to parse an amount an operator typed (forms take minor units).
"""

from __future__ import annotations

# ISO 4217 minor-unit exponents that differ from 2, plus the currencies the demo and tests
# use. Anything not listed has exponent 2 (the ISO default for most currencies).
EXPONENTS: dict[str, int] = {
    # exponent 0
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # exponent 3
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # exponent 4
    "CLF": 4, "UYW": 4,
}
EXPONENT_DEFAULT = 2


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency, EXPONENT_DEFAULT)


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
