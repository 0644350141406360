"""The connector's configuration (`[mobilemoney]` in the server's config, converted when the
server starts it) and each wallet's settings.

A wallet on this API is a participant (kind "wallet" or "bank") with a `WalletSettings`
entry: where Ponte reaches its API for the credits it receives, which transaction type it
wants those credits as, how it authenticates to the hub, whether it must send
X-Content-Hash. Settings come from this configuration at start and from the operator's
maker-checker proposals at run time (kind `mobilemoney_wallet`, switch/admin). The key
Ponte presents to a wallet's own API is a secret: only in the configuration (or the
environment), never in a proposal, a log or a repr.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from connectors.mobilemoney import limits
from connectors.mobilemoney.wire import PaymentType
from switch.core import limits as core_limits
from switch.core.messages import CallbackUrl

ParticipantId = Annotated[int, Meta(ge=1, le=core_limits.PARTICIPANT_ID_MAX)]


class WalletSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One wallet's use of the Mobile Money API."""

    participant_id: ParticipantId
    # The wallet's GSMA API root (".../mm" ): Ponte POSTs the credits it receives there. ""
    # when the wallet only sends through the API (its credits then reach it by its other
    # doors).
    api_url: CallbackUrl = ""
    credit_type: PaymentType = "transfer"
    # Ask the wallet for a callback (X-Callback-URL) or poll its /requeststates.
    notification: Literal["callback", "polling"] = "callback"
    # Look the credited account's name up (GET .../accountname) before POSTing a credit: a
    # 404 there rejects the credit without asking for it.
    account_check: bool = True
    # How the wallet authenticates to the hub: its API key in X-API-Key, an OAuth2 bearer
    # token got with that key as client secret (POST /oauth/token), or either.
    auth: Literal["api_key", "oauth2", "any"] = "any"
    # Refuse the wallet's requests with a body that carry no matching X-Content-Hash.
    content_hash_required: bool = False
    # Origins (scheme://host:port) its X-Callback-URL may name besides api_url's.
    callback_origins: Annotated[tuple[CallbackUrl, ...],
                                Meta(max_length=limits.OUTBOUND_ORIGINS_PER_WALLET_MAX)] = ()
    # Sent as X-API-Key on Ponte's requests to the wallet's API. A secret: never logged.
    outbound_api_key: Annotated[str, Meta(max_length=256)] = msgspec.field(default="")

    def __repr__(self) -> str:  # the outbound key never prints
        return (f"WalletSettings(participant_id={self.participant_id}, api_url="
                f"{self.api_url!r}, credit_type={self.credit_type!r}, ...)")


class MobileMoneyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8090
    # As wallets reach the hub: the root of the X-Callback-URL Ponte gives wallets for the
    # credits it sends them. "" means http://host:port.
    public_url: CallbackUrl = ""
    wallets: tuple[WalletSettings, ...] = ()
    expiry_ms: Annotated[int, Meta(ge=1_000, le=core_limits.EXPIRY_MS_MAX_DEFAULT)] = (
        limits.EXPIRY_MS_DEFAULT)
    # Answer 202 once the request is journaled (True), or as soon as it is queued.
    accept_when_durable: bool = True
    connections_per_address_max: Annotated[int, Meta(ge=1, le=4096)] = 256

    def __repr__(self) -> str:
        return f"MobileMoneyConfig(host={self.host!r}, port={self.port}, wallets=...)"
