"""Scheme fees: fixed + basis points of the amount, charged to the payer participant.

The fee is a second ledger leg (payer -> hub fees) linked to the payment, so both reserve,
post and void together. Integer arithmetic only, rounded down: a fee never exceeds what the
rule says. Returns carry no fee (the original transfer already paid it). This module must
never import anything that does I/O.
"""

from __future__ import annotations

from switch.core import limits
from switch.core.messages import SchemeRules


def fee_minor(rules: SchemeRules, amount_minor: int) -> int:
    assert 1 <= amount_minor <= limits.AMOUNT_MINOR_MAX
    fee = rules.fee_fixed_minor + amount_minor * rules.fee_bps // limits.BPS_PER_UNIT
    assert 0 <= fee <= limits.FEE_FIXED_MINOR_MAX + limits.AMOUNT_MINOR_MAX
    return fee
