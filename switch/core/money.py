"""ISO 4217 minor-unit exponents: how many decimal places a currency's amounts have.

The switch holds integers of minor units only; the exponent says how an amount written in
major units ("15.21" KES) maps to them. One table for every surface that reads or writes
major units: the console, the FSPIOP and GSMA Mobile Money connectors. Pure data, no I/O.
"""

from __future__ import annotations

# Exponents that differ from 2, plus the currencies the demo and tests use. Anything not
# listed has exponent 2 (the ISO default for most currencies).
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
