"""The settlement package's configuration: the `[server.settlement]` table (ServerConfig's
`settlement` dict), read once into a frozen Struct when the composition root starts it.

It names how the scheme and its participants are identified in ISO 20022 documents: the
settlement agent (the scheme's account at the central bank), the central bank (the RTGS),
the clearing system's code, and optional BICs for participants. It must never hold a rule
of settlement (those are the core's) or a secret.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

# ISO 20022's BICFIDec2014Identifier.
Bic = Annotated[str, Meta(pattern=r"^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$(?!\n)")]
Code35 = Annotated[str, Meta(min_length=1, max_length=35,
                             pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$(?!\n)")]
Name140 = Annotated[str, Meta(min_length=1, max_length=140)]


class SettlementConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the scheme appears in its settlement documents."""

    # Where the entry log lives; "" = `<data_dir>/settlement`.
    entries_dir: str = ""
    # The scheme operator's settlement account at the central bank: net debtors pay into
    # it, net creditors are paid from it (pacs.009 Cdtr / Dbtr of each instruction).
    settlement_agent_bic: Bic = "PONTXXAA"
    settlement_agent_name: Name140 = "Ponte settlement account"
    settlement_account_id: Code35 = "PONTE-SETTLEMENT"
    # The RTGS (the central bank): the instructions' InstdAgt. (The statements' servicer,
    # Svcr, is the settlement agent above: it holds the accounts they report.)
    central_bank_bic: Bic = "CBNKXXAA"
    # The clearing system the participants are members of (ClrSysId/Prtry).
    clearing_system: Code35 = "PONTE"
    # Participants' BICs by participant id (as text, TOML keys); absent: identified by
    # their clearing-system member id (the participant id) and name.
    participant_bics: dict[str, Bic] = {}
