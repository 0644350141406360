"""The HTTP connector's own JSON bodies: the few resources that are not a core message.

Most bodies ARE core messages (`switch/core/messages.py`): POST /transfers takes a
`TransferRequest`, GET /transfers/... answers a `TransferOutcome`, callbacks carry any
`Outbound`. Only where the URL already names the resource (the payee's answer and the
payer's decision, which PUT to the transfer or request they answer) does the body leave
the ids out; `app.py` joins path and body into the core message. All are frozen, kw-only
and refuse unknown fields, so a misspelt field is named in the 400 answer.

This module must never import anything that does I/O.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from switch.core.messages import IdOrEmpty, Reference, Text, TimeNs

_BODY = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True)

class PayeeAnswerBody(msgspec.Struct, **_BODY):
    """PUT /transfers/{payer_participant_id}/{transfer_id}: the payee accepts or rejects
    the credit request it was sent. Credit the customer only on the COMMITTED outcome."""

    accepted: bool
    reason: Text = ""


class RequestToPayDecisionBody(msgspec.Struct, **_BODY):
    """PUT /requests-to-pay/{payee_participant_id}/{request_id}: the payer approves (the
    request becomes the transfer named here) or declines."""

    approved: bool
    transfer_id: IdOrEmpty = ""  # a new transfer id, required when approved
    expires_at_ns: TimeNs = 0  # the transfer's expiry, required when approved
    payer_account_ref: Reference = ""
    payer_user_ref: Reference = ""


class Accepted(msgspec.Struct, **_BODY):
    """202 body: the request is durably recorded; its outcome arrives at the callback URL
    and is always retrievable at `status_path` (for transfers, returns and decisions)."""

    kind: Literal["transfer", "return", "payee_answer", "request_to_pay",
                  "request_to_pay_decision"]
    id: str
    status_path: str = ""


class Health(msgspec.Struct, **_BODY):
    """GET /health: whether the switch takes requests (False while starting or draining)."""

    accepting: bool
    version: str = ""
