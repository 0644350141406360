"""Row shapes of the admin tables, shared by the SQLite and PostgreSQL admin stores.

Both stores keep the same columns in the same order (migration 0004_admin.sql and
`admin_embedded.SCHEMA`), so one pair of functions per record converts a row either way.
Nothing here touches a connection.
"""

from __future__ import annotations

import msgspec

from switch.admin.types import (
    AuditRecord,
    Proposal,
    ProposalBody,
    ProposalState,
    Role,
    Session,
    User,
    proposal_currency,
    proposal_kind,
    proposal_participant_id,
)

USER_COLUMNS = "username, role, password_hash, created_ns, disabled"
SESSION_COLUMNS = "token_hash, username, role, csrf_token, created_ns, expires_ns, seen_ns, client"
AUDIT_COLUMNS = (
    "seq, at_ns, actor, action, target, result, detail, client, prev_hash, record_hash"
)
PROPOSAL_COLUMNS = (
    "proposal_id, kind, participant_id, currency, body, state, proposed_by, proposed_ns, "
    "decided_by, decided_ns, core_result, detail"
)

_body_decoder = msgspec.json.Decoder(ProposalBody)
_encode = msgspec.json.Encoder().encode


def user_from_row(row) -> User:
    return User(username=row[0], role=Role(row[1]), password_hash=row[2], created_ns=row[3],
                disabled=bool(row[4]))


def user_row(user: User) -> tuple:
    return (user.username, int(user.role), user.password_hash, user.created_ns, user.disabled)


def session_from_row(row) -> Session:
    return Session(token_hash=bytes(row[0]), username=row[1], role=Role(row[2]),
                   csrf_token=row[3], created_ns=row[4], expires_ns=row[5], seen_ns=row[6],
                   client=row[7])


def session_row(session: Session) -> tuple:
    return (session.token_hash, session.username, int(session.role), session.csrf_token,
            session.created_ns, session.expires_ns, session.seen_ns, session.client)


def audit_from_row(row) -> AuditRecord:
    return AuditRecord(seq=row[0], at_ns=row[1], actor=row[2], action=row[3], target=row[4],
                       result=row[5], detail=row[6], client=row[7], prev_hash=bytes(row[8]),
                       record_hash=bytes(row[9]))


def audit_row(record: AuditRecord) -> tuple:
    return (record.seq, record.at_ns, record.actor, record.action, record.target, record.result,
            record.detail, record.client, record.prev_hash, record.record_hash)


def proposal_row(proposal: Proposal) -> tuple:
    body = proposal.body
    return (proposal.proposal_id, proposal_kind(body), proposal_participant_id(body),
            proposal_currency(body), _encode(body).decode(), int(proposal.state),
            proposal.proposed_by,
            proposal.proposed_ns, proposal.decided_by, proposal.decided_ns,
            proposal.core_result, proposal.detail)


def proposal_from_row(row) -> Proposal:
    return Proposal(proposal_id=row[0], body=_body_decoder.decode(row[4]),
                    state=ProposalState(row[5]), proposed_by=row[6], proposed_ns=row[7],
                    decided_by=row[8], decided_ns=row[9], core_result=row[10], detail=row[11])

