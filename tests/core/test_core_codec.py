"""Every message type round-trips through its codec; bad bytes get a typed error."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.core import codec, limits
from switch.core.messages import (
    ErrorAnswer,
    Inbound,
    Outbound,
    CreditRequest,
    Party,
    PayeeAnswer,
    Refused,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    ResolveAnswer,
    ResolveRequest,
    ReturnRequest,
    StatusQuery,
    TransferOutcome,
    TransferRef,
    TransferRequest,
    TransferRequested,
)
from switch.core.results import RequestToPayState, Result, TransferState

ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
T = 1_700_000_000 * 10**9

INBOUND = [
    ResolveRequest(alias=ALIAS, payer_user_ref="u-1"),
    TransferRequest(transfer_id="0b9c5c9e-2c1a-4f0b-9d5e-6a1f8f0c1a11", payee=ALIAS,
                    amount_minor=12_345, currency="KES", expires_at_ns=T, end_to_end_id="E2E1",
                    purpose="rent", payer_account_ref="acc-1", payer_user_ref="u-1"),
    ReturnRequest(transfer_id="r-1", original=TransferRef(payer_participant_id=7, transfer_id="t-1"),
                  amount_minor=5, expires_at_ns=T, reason="refund"),
    PayeeAnswer(payer_participant_id=7, transfer_id="t-1", accepted=False, reason="closed"),
    StatusQuery(payer_participant_id=7, transfer_id="t-1"),
    RequestToPay(request_id="q-1", payer=ALIAS, amount_minor=99, currency="BRL", expires_at_ns=T),
    RequestToPayDecision(payee_participant_id=3, request_id="q-1", approved=True,
                         transfer_id="t-9", expires_at_ns=T),
]
OUTBOUND = [
    ResolveAnswer(alias=ALIAS, result=Result.OK, payee_participant_id=3,
                  payee_account_ref="x", display_name_masked="J*** D***"),
    CreditRequest(payer_participant_id=7, transfer_id="t-1", payee_account_ref="x",
                  amount_minor=5, currency="KES", expires_at_ns=T, payee_alias=ALIAS,
                  return_of=TransferRef(payer_participant_id=3, transfer_id="t-0")),
    TransferOutcome(payer_participant_id=7, transfer_id="t-1", state=TransferState.COMMITTED,
                    result=Result.OK, payee_participant_id=3, amount_minor=5, fee_minor=1,
                    currency="KES", decided_at_ns=T),
    RequestToPayNotice(payee_participant_id=3, request_id="q-1", payer_account_ref="a",
                       amount_minor=5, currency="BRL", expires_at_ns=T),
    RequestToPayOutcome(payee_participant_id=3, request_id="q-1",
                        state=RequestToPayState.DECLINED, result=Result.PAYER_REJECTED_REQUEST),
    Refused(request_type="transfer", scope_participant_id=7, id="t-1",
            result=Result.EXISTS_WITH_DIFFERENT_AMOUNT),
    ErrorAnswer(result=Result.MALFORMED_SYNTAX, detail="bad frame"),
]


def test_every_wire_type_has_an_example():
    assert {type(m) for m in INBOUND} == set(Inbound.__args__)
    assert {type(m) for m in OUTBOUND} == set(Outbound.__args__)


@pytest.mark.parametrize("message", INBOUND, ids=lambda m: type(m).__name__)
def test_inbound_round_trip(message):
    assert codec.decode_inbound_msgpack(codec.encode_inbound_msgpack(message)) == message
    assert codec.decode_inbound_json(msgspec.json.encode(message)) == message


@pytest.mark.parametrize("message", OUTBOUND, ids=lambda m: type(m).__name__)
def test_outbound_round_trip(message):
    assert codec.decode_outbound_msgpack(codec.encode_outbound_msgpack(message)) == message
    assert codec.decode_outbound_json(codec.encode_outbound_json(message)) == message


def test_json_uses_readable_tags_and_omits_defaults():
    body = codec.encode_outbound_json(OUTBOUND[3])
    assert body.startswith(b'{"type":"request_to_pay_notice"')
    assert b"purpose" not in body


BAD_BODIES = [
    (b'{"type":"transfer","transfer_id":"","payee":null,"amount_minor":1,"currency":"BRL",'
     b'"expires_at_ns":1}', "transfer_id"),
    (b'{"type":"transfer","transfer_id":"a","payee":null,"amount_minor":0,"currency":"BRL",'
     b'"expires_at_ns":1}', "amount_minor"),
    (b'{"type":"transfer","transfer_id":"a","payee":null,"amount_minor":1.5,"currency":"BRL",'
     b'"expires_at_ns":1}', "amount_minor"),
    (b'{"type":"transfer","transfer_id":"a","payee":null,"amount_minor":1,"currency":"brl",'
     b'"expires_at_ns":1}', "currency"),
    (b'{"type":"transfer","transfer_id":"a","payee":null,"amount_minor":1,"currency":"BRL",'
     b'"expires_at_ns":1,"sneaky":1}', "sneaky"),
    (b'{"type":"transfer","transfer_id":"a b","payee":null,"amount_minor":1,"currency":"BRL",'
     b'"expires_at_ns":1}', "transfer_id"),
    (b'{"type":"status_query","payer_participant_id":0,"transfer_id":"a"}',
     "payer_participant_id"),
    (b'{"type":"launch_missiles"}', "type"),
    # One id grammar at every entrance: a trailing newline is not an id either ...
    (b'{"type":"transfer","transfer_id":"a\\n","payee":null,"amount_minor":1,'
     b'"currency":"BRL","expires_at_ns":1}', "transfer_id"),
    (b'{"type":"return","transfer_id":"r","original":{"payer_participant_id":1,'
     b'"transfer_id":"t\\n"},"amount_minor":1,"expires_at_ns":1}', "transfer_id"),
    (b'{"type":"request_to_pay","request_id":"q\\n","payer":{"alias_type":"MSISDN",'
     b'"alias_value":"1"},"amount_minor":1,"currency":"BRL","expires_at_ns":1}', "request_id"),
    # ... and the transfer an approval names is an id like any other (HTTP paths, snapshots).
    (b'{"type":"request_to_pay_decision","payee_participant_id":2,"request_id":"q",'
     b'"approved":true,"transfer_id":"a/b","expires_at_ns":1}', "transfer_id"),
    (b'{"type":"request_to_pay_decision","payee_participant_id":2,"request_id":"q",'
     b'"approved":true,"transfer_id":"a b","expires_at_ns":1}', "transfer_id"),
    (b'{"type":"request_to_pay_decision","payee_participant_id":2,"request_id":"q",'
     b'"approved":true,"transfer_id":"a\\n","expires_at_ns":1}', "transfer_id"),
    (b'{"type":"request_to_pay_decision","payee_participant_id":2,"request_id":"q",'
     b'"approved":true,"transfer_id":"caf\\u00e9","expires_at_ns":1}', "transfer_id"),
    (b'{"type":"request_to_pay_decision","payee_participant_id":2,"request_id":"q",'
     b'"approved":true,"transfer_id":"' + b"x" * 65 + b'","expires_at_ns":1}', "transfer_id"),
    # Only the switch links a transfer to a request-to-pay (the one an approval creates).
    (b'{"type":"transfer","transfer_id":"a","payee":{"alias_type":"MSISDN","alias_value":"1"},'
     b'"amount_minor":1,"currency":"BRL","expires_at_ns":1,"request_to_pay_id":"q1"}',
     "request_to_pay_id"),
    (b'{"type":"payee_answer"', None),  # truncated: malformed, not invalid
]


@pytest.mark.parametrize("body, field", BAD_BODIES)
def test_bad_bodies_get_a_typed_error_naming_the_field(body, field):
    with pytest.raises(msgspec.DecodeError) as caught:  # ValidationError is a DecodeError
        codec.decode_inbound_json(body)
    if field is None:
        assert not isinstance(caught.value, msgspec.ValidationError)
    else:
        assert isinstance(caught.value, msgspec.ValidationError)
        assert field in str(caught.value)


def test_amount_bound_is_in_the_type():
    body = (b'{"type":"transfer","transfer_id":"a","payee":null,"amount_minor":%d,'
            b'"currency":"BRL","expires_at_ns":1}')
    codec.decode_inbound_json(body % limits.AMOUNT_MINOR_MAX)
    with pytest.raises(msgspec.ValidationError):
        codec.decode_inbound_json(body % (limits.AMOUNT_MINOR_MAX + 1))


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,40}", fullmatch=True)
transfers = st.builds(
    TransferRequest,
    transfer_id=ids,
    payee=st.none() | st.builds(Party, alias_type=st.sampled_from(["MSISDN", "EMAIL", "RANDOM"]),
                                alias_value=st.text(min_size=1, max_size=50)),
    amount_minor=st.integers(1, limits.AMOUNT_MINOR_MAX),
    currency=st.from_regex(r"[A-Z]{3}", fullmatch=True),
    expires_at_ns=st.integers(0, limits.TIME_NS_MAX),
    end_to_end_id=st.text(max_size=35),
    purpose=st.text(max_size=limits.TEXT_LENGTH_MAX),
)


@given(request=transfers, payer=st.integers(1, 2**24 - 1), payee=st.integers(1, 2**24 - 1),
       now_ns=st.integers(0, 2**63 - 1))
def test_journal_round_trip_of_any_valid_transfer(request, payer, payee, now_ns):
    event = TransferRequested(payer_participant_id=payer, payee_participant_id=payee,
                              payee_account_ref="ref", request=request)
    assert codec.decode_event(codec.encode_event(now_ns, event)) == (now_ns, event)
    assert codec.decode_inbound_msgpack(codec.encode_inbound_msgpack(request)) == request


ID_CASES = ["t-1", "0b9c5c9e-2c1a-4f0b-9d5e-6a1f8f0c1a11", "a.b_c:d-e", "x" * 64, "", "x" * 65,
            "a/b", "a b", "a\n", "\na", "a\r", "-a", ".a", "caf\u00e9", "\u0661", "a%2Fb",
            "a\x00"]


@pytest.mark.parametrize("text", ID_CASES, ids=repr)
def test_one_id_grammar_for_the_type_and_every_checker(text):
    """The `Id` type (decoders, journal, snapshots) and `id_valid` (the core's re-check, the
    HTTP path check) agree on every string, including the ones `$` would let through."""
    from switch.core.messages import Id, id_valid

    try:
        msgspec.convert(text, Id)
        typed = True
    except msgspec.ValidationError:
        typed = False
    assert id_valid(text) is typed
    expected = text in ID_CASES[:4]
    assert typed is expected


def _struct_parts(value):
    """The value and every Struct, tuple and list it holds, depth first."""
    yield value
    if isinstance(value, msgspec.Struct):
        for field in value.__struct_fields__:
            yield from _struct_parts(getattr(value, field))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _struct_parts(item)


@pytest.mark.parametrize("message", [m for m in INBOUND
                                     if isinstance(m, (TransferRequest, RequestToPay))],
                         ids=lambda m: type(m).__name__)
def test_what_the_core_keeps_per_payment_is_invisible_to_the_garbage_collector(message):
    """The core keeps every transfer and request-to-pay it decided (their events included) for
    its retention window: were any part tracked by the cyclic GC, each full collection would
    walk millions of them (an enum-typed field made `Party` tracked once: +2 µs a transfer
    in `ponte bench core`)."""
    import gc

    decoded = codec.decode_inbound_msgpack(codec.encode_inbound_msgpack(message))
    tracked = [type(part).__name__ for part in _struct_parts(decoded)
               if isinstance(part, msgspec.Struct) and gc.is_tracked(part)]
    assert tracked == []
