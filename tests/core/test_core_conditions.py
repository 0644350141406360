"""Conditional transfers (the FSPIOP/Interledger condition): the payee's acceptance commits
only with the condition's SHA-256 preimage; the outcome carries it to the payer; a resend
whose dialect digest differs is a modified request."""

from __future__ import annotations

import base64
import hashlib
import os

import msgspec

from core_helpers import World, only, result_of
from switch.core.messages import CreditRequest, PayeeAnswered, Send, TransferOutcome
from switch.core.results import Result, TransferState


def _pair() -> tuple[str, str]:
    fulfilment = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(base64.urlsafe_b64decode(fulfilment + "=")).digest()
    return fulfilment, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _accept(w: World, event, fulfilment: str) -> list:
    answer = w.transfer_answer_event(event, True)
    return w.step(PayeeAnswered(payee_participant_id=answer.payee_participant_id,
                                answer=msgspec.structs.replace(answer.answer,
                                                               fulfilment=fulfilment)))


def _outcomes(commands) -> list[TransferOutcome]:
    return [c.message for c in commands if type(c) is Send and type(c.message) is TransferOutcome]


def test_credit_request_carries_the_condition_and_commit_carries_the_fulfilment(world):
    fulfilment, condition = _pair()
    event, commands = world.send_transfer(condition=condition)
    credit = only([c.message for c in commands if type(c) is Send], CreditRequest)
    assert credit.condition == condition
    outcomes = _outcomes(_accept(world, event, fulfilment))
    assert [o.state for o in outcomes] == [TransferState.COMMITTED] * 2
    assert all(o.fulfilment == fulfilment for o in outcomes)


def test_wrong_or_missing_fulfilment_voids_the_reserve(world):
    for wrong in ("", _pair()[0]):
        _, condition = _pair()
        event, _ = world.send_transfer(condition=condition)
        before = world.ledger.totals()
        commands = _accept(world, event, wrong)
        assert result_of(commands) == Result.FULFILMENT_INVALID
        outcomes = _outcomes(commands)
        assert [o.state for o in outcomes] == [TransferState.REJECTED] * 2
        assert not any(o.fulfilment for o in outcomes)
        assert world.ledger.totals() != before  # the void was posted: nothing pending


def test_fulfilment_of_an_unconditional_transfer_is_ignored(world):
    event, _ = world.send_transfer()
    outcomes = _outcomes(_accept(world, event, _pair()[0]))
    assert [o.state for o in outcomes] == [TransferState.COMMITTED] * 2
    assert not any(o.fulfilment for o in outcomes)


def test_resend_with_another_dialect_digest_is_a_modified_request(world):
    _, condition = _pair()
    event, _ = world.send_transfer(condition=condition, dialect_sha256="C" * 43)
    same = world.step(event)
    assert result_of(same) == Result.OK
    changed = msgspec.structs.replace(event, request=msgspec.structs.replace(
        event.request, dialect_sha256="D" * 43))
    assert result_of(world.step(changed)) == Result.EXISTS_WITH_DIFFERENT_BODY
