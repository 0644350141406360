"""The G2P connector: G2P Connect's mapper and disbursement APIs over HTTP, on the switch.

Mapper (banks and wallets link their customers' national IDs to their accounts; programmes
resolve): `/mapper/link|update|unlink|resolve` answer an Ack and call back `on-*` at the
caller's callback URL; `/mapper/sync/...` answer at once; `/mapper/txn/status` (and
`/mapper/sync/txn/status`) answer a transaction's response again. Disbursement (programmes,
participants of kind `government`): `/disburse` (+ `on-disburse`), `/disburse/search`,
`/disburse/txn/status` and their `sync/` variants, and the reports under `/g2p/batches`.
docs/g2p.md has every rule; this module translates, checks and calls the gateway, the
engine (switch/g2p/engine.py) and the G2P store.

Identity: the caller is the participant its API key names (`Authorization: Bearer <key>`),
never a field of the body (`sender_id` is informational). A national ID is turned into its
identity token as soon as a row or a mapper item is read; the raw value is never stored,
logged, forwarded or echoed (responses name beneficiaries by `reference_id` only).

It must never change anything for a request it answers with an error, never decide a
payment (the core does), and never answer one programme about another's batch (such a
batch is "not found", like one that does not exist).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from urllib.parse import parse_qs

import msgspec

from connectors.g2p import messages as m
from connectors.g2p.callbacks import G2PCallbacks
from connectors.http.server import HttpServer, Request, Response
from switch.core import limits as core_limits
from switch.core.money import exponent
from switch.core.results import Result
from switch.directory.types import DirectoryResult, Rejection
from switch.g2p import limits, reports
from switch.g2p.ports import ROW_ADDED, ROW_DUPLICATE, ROW_EXISTS
from switch.g2p.types import (
    BatchState,
    transaction_id_valid,
    G2PConfig,
    NewRow,
    PayeeKind,
)

log = logging.getLogger("ponte.g2p")

_encode = msgspec.json.Encoder().encode
# The spec's Amount: "^\d{1,13}\.\d{1,2}$" (decimal point required), at most the
# currency's ISO 4217 exponent of digits after it (switch/core/money.py).
_AMOUNT = re.compile(r"^(\d{1,13})\.(\d{1,4})$(?!\n)")
_ACCOUNT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$(?!\n)")
_PAGE = re.compile(rb"^[1-9][0-9]{0,6}$")

# Spec error codes (Error.code) for the typed results this connector answers.
_SPEC_ERROR = {
    Result.VALIDATION_ERROR: "err.request.bad",
    Result.MALFORMED_SYNTAX: "err.request.bad",
    Result.G2P_NOT_A_PROGRAMME: "err.request.forbidden",
    Result.G2P_MESSAGE_TOO_LARGE: "err.request.bad",
    Result.G2P_BATCH_TOO_LARGE: "err.request.bad",
    Result.G2P_BATCH_NOT_FOUND: "err.request.not_found",
    Result.G2P_BATCH_CLOSED: "err.request.bad",
    Result.SERVICE_UNAVAILABLE: "err.service.unavailable",
    Result.SERVER_BUSY: "err.request.too_many_requests",
    Result.INVALID_SIGNATURE: "err.request.unauthorized",
}
_STATUS = {
    Result.VALIDATION_ERROR: 400, Result.MALFORMED_SYNTAX: 400,
    Result.G2P_NOT_A_PROGRAMME: 403, Result.G2P_MESSAGE_TOO_LARGE: 413,
    Result.G2P_BATCH_TOO_LARGE: 413, Result.G2P_BATCH_NOT_FOUND: 404,
    Result.G2P_BATCH_CLOSED: 409, Result.SERVICE_UNAVAILABLE: 503, Result.SERVER_BUSY: 503,
    Result.INVALID_SIGNATURE: 401,
}


def error(result: Result, detail: str = "", status: int | None = None) -> Response:
    """A typed error: the spec's HttpErrorResponse (`errors`) plus Ponte's result code."""
    body = _encode({"errors": [{"code": _SPEC_ERROR.get(result, "err.request.bad"),
                                "message": detail[:999] or result.name.lower()}],
                    "result": int(result), "name": result.name})
    return Response(status or _STATUS.get(result, 400), body)


def http_error(status: int, detail: str) -> Response:
    """The HTTP server's ErrorFactory (framing, bounds)."""
    result = Result.SERVICE_UNAVAILABLE if status == 503 else Result.VALIDATION_ERROR
    return error(result, detail, status)


_UNAUTHORIZED = error(Result.VALIDATION_ERROR, "missing or unknown API key", 401)
_NOT_JSON = error(Result.VALIDATION_ERROR, "Content-Type must be application/json", 415)
_SIGNATURE_REQUIRED = error(Result.INVALID_SIGNATURE, "this participant's policy requires "
                            "signed requests, which this door does not verify", 401)


def now_text() -> str:
    return reports.rfc3339(time.time_ns())


def parse_timestamp(text: str) -> int | None:
    """RFC 3339 / ISO 8601 with a zone -> ns since the epoch, or None."""
    import datetime

    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    ns = int(value.timestamp() * 1e9)
    return ns if 0 < ns < core_limits.TIME_NS_MAX else None


class G2PConnector:
    """The G2P HTTP API of one switch process. `start()` listens; `close()` stops."""

    def __init__(self, gateway, engine, store, config: G2PConfig, report_dir: str) -> None:
        self.gateway = gateway
        self.engine = engine
        self.store = store
        self.config = config
        self.report_dir = report_dir
        self.callbacks = G2PCallbacks(gateway.callback_url, store)
        engine.on_batch_done = self._batch_done
        self.server = HttpServer(self.handle, http_error,
                                 request_body_bytes_max=limits.REQUEST_BODY_BYTES_MAX)
        self._correlation = 0
        self._provider_suffix = "@" + config.national_id_provider
        decoder = msgspec.json.Decoder
        self._decoders = {
            "link": decoder(m.envelope(m.LinkRequest)),
            "update": decoder(m.envelope(m.UpdateRequest)),
            "unlink": decoder(m.envelope(m.UnlinkRequest)),
            "resolve": decoder(m.envelope(m.ResolveRequest)),
            "txn": decoder(m.envelope(m.TxnStatusRequest)),
            "disburse": decoder(m.envelope(m.DisburseRequest)),
            "search": decoder(m.envelope(m.SearchRequest)),
        }
        self._routes = {
            b"/mapper/link": ("link", False), b"/mapper/sync/link": ("link", True),
            b"/mapper/update": ("update", False), b"/mapper/sync/update": ("update", True),
            b"/mapper/unlink": ("unlink", False), b"/mapper/sync/unlink": ("unlink", True),
            b"/mapper/resolve": ("resolve", False), b"/mapper/sync/resolve": ("resolve", True),
            b"/mapper/txn/status": ("mapper_txn", False),
            b"/mapper/sync/txn/status": ("mapper_txn", True),
            b"/disburse": ("disburse", False), b"/disburse/sync/disburse": ("disburse", True),
            b"/disburse/search": ("search", False), b"/disburse/sync/search": ("search", True),
            b"/disburse/txn/status": ("disburse_txn", False),
            b"/disburse/sync/txn/status": ("disburse_txn", True),
        }

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, *, sock=None) -> None:
        self.callbacks.start()
        await self.server.start(self.config.host, self.config.port, sock=sock)
        log.info("g2p.listening host=%s port=%d", self.config.host, self.server.port)

    @property
    def port(self) -> int:
        return self.server.port

    async def close(self, grace_ms: int = 5_000) -> None:
        await self.server.close(grace_ms)
        await self.callbacks.close()

    # -- routing ---------------------------------------------------------------------

    def handle(self, request: Request):
        if request.method == b"POST":
            route = self._routes.get(request.path)
            if route is None:
                return error(Result.VALIDATION_ERROR, "no such resource", 404)
            return self._post(request, *route)
        if request.method in (b"GET", b"HEAD") and request.path.startswith(b"/g2p/batches"):
            return self._report(request)
        return error(Result.VALIDATION_ERROR, "method not allowed here", 405)

    def _caller(self, request: Request) -> int | Response:
        value = request.headers.get(b"authorization")
        if value is not None and value[:7].lower() == b"bearer ":
            key = value[7:].strip()
        else:
            key = request.headers.get(b"x-api-key")
        if not key:
            return _UNAUTHORIZED
        try:
            participant_id = self.gateway.authenticate(key.decode("ascii"))
        except UnicodeDecodeError:
            return _UNAUTHORIZED
        if participant_id is None:
            return _UNAUTHORIZED
        if participant_id in self.gateway.signature_policy:
            # G2P Connect's `signature` field is not verified here, so a participant whose
            # policy requires signed requests cannot use this door (docs/g2p.md).
            return _SIGNATURE_REQUIRED
        return participant_id

    async def _post(self, request: Request, kind: str, sync: bool) -> Response:
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        media = request.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if media != b"application/json":
            return _NOT_JSON
        decoder = self._decoders[{"mapper_txn": "txn", "disburse_txn": "txn"}.get(kind, kind)]
        try:
            body = decoder.decode(request.body)
        except msgspec.ValidationError as problem:
            return error(Result.VALIDATION_ERROR, str(problem))
        except (msgspec.DecodeError, RecursionError) as problem:
            return error(Result.MALFORMED_SYNTAX, str(problem)[:200])
        header = body.header
        if header.is_msg_encrypted:
            return error(Result.VALIDATION_ERROR, "encrypted messages are not supported")
        if kind in _ACTIONS and header.action != kind:
            return error(Result.VALIDATION_ERROR, f"header.action must be {kind!r}")
        handler = getattr(self, f"_{kind}")
        try:
            action, answer, status = await handler(caller, body.message, header)
        except _Refusal as refusal:
            return refusal.response
        correlation_id = self._next_correlation()
        callback = {"header": self._callback_header(header, f"on-{action}", status),
                    "message": {**answer, "correlation_id": correlation_id}}
        encoded = _encode(callback)
        if sync:
            return Response(200, encoded)
        self.callbacks.send(caller, _CALLBACK_PATHS[kind], encoded)
        return Response(200, _encode({"message": {"ack_status": "ACK",
                                                  "timestamp": now_text(),
                                                  "correlation_id": correlation_id}}))

    def _next_correlation(self) -> str:
        self._correlation += 1
        return f"{time.time_ns():x}-{self._correlation}"

    def _callback_header(self, header: m.Header, action: str, status: dict) -> dict:
        return {"version": "1.0.0", "message_id": header.message_id,
                "message_ts": now_text(), "action": action,
                "status": status.get("status", "succ"),
                **{key: value for key, value in status.items() if key != "status"},
                "sender_id": "ponte", "receiver_id": header.sender_id}

    # -- mapper ----------------------------------------------------------------------

    def _national_id(self, person_id: str) -> str:
        """The national ID of a G2P person id: `<national id>@<provider>` or the bare ID."""
        if person_id.endswith(self._provider_suffix):
            return person_id[:-len(self._provider_suffix)]
        return person_id

    def _own_account(self, caller: int, fa: str) -> str | None:
        """The account reference of `fa` if it names one of the caller's accounts."""
        account_ref, at, provider = fa.rpartition("@")
        if not at or provider != str(caller) or not _ACCOUNT_REF.match(account_ref):
            return None
        return account_ref

    def _require_kind(self, caller: int, programme: bool) -> None:
        kind = self.gateway.participant_kind(caller)
        if programme and kind != "government":
            raise _Refusal(error(Result.G2P_NOT_A_PROGRAMME,
                                 "only a programme (kind government) may do this"))
        if not programme and kind == "government":
            raise _Refusal(error(Result.G2P_NOT_A_PROGRAMME,
                                 "a programme resolves; banks and wallets link", 403))

    async def _link(self, caller, message, header, items=None, action="link"):
        self._require_kind(caller, programme=False)
        self._check_count(header, len(items or message.link_request))
        answers = []
        notices = []
        for item in items or message.link_request:
            entry = {"reference_id": item.reference_id, "timestamp": now_text()}
            linked_ns = parse_timestamp(item.timestamp)
            account_ref = self._own_account(caller, item.fa)
            if linked_ns is None:
                entry.update(status="rjct", status_reason_code="rjct.timestamp.invalid")
            elif account_ref is None:
                entry.update(status="rjct", status_reason_code="rjct.fa.invalid",
                             status_reason_message="fa must be <account>@<your participant id>")
            else:
                answer, moved = await self.gateway.mapper_link(
                    caller, self._national_id(item.id), account_ref, linked_ns)
                if type(answer) is Rejection:
                    code = ("rjct.timestamp.invalid"  # stale, or ahead of the clock
                            if answer.field == "timestamp_ns" else "rjct.id.invalid")
                    entry.update(status="rjct", status_reason_code=code,
                                 status_reason_message=answer.result.name.lower())
                else:
                    entry.update(status="succ", fa=answer.fa)
                    notices.extend(moved)
            answers.append(entry)
        if notices:
            await self._moved_out(notices)
        response = {"transaction_id": message.transaction_id, f"{action}_response": answers}
        await self.store.put_mapper_txn(caller, message.transaction_id, action,
                                        _encode(response), time.time_ns())
        return action, response, _counts(answers)

    async def _update(self, caller, message, header):
        return await self._link(caller, message, header, message.update_request, "update")

    async def _moved_out(self, notices) -> None:
        """Durable moved-out notices for the participants that held the links before."""
        rows = []
        for notice in notices:
            body = {"header": {"version": "1.0.0", "message_id": self._next_correlation(),
                               "message_ts": now_text(), "action": "on-unlink",
                               "status": "succ", "sender_id": "ponte"},
                    "message": {"transaction_id": "moved-out",
                                "correlation_id": self._next_correlation(),
                                "unlink_response": [{
                                    "reference_id": "moved-out", "timestamp": now_text(),
                                    "status": "succ", "status_reason_message": "moved_out",
                                    "additional_info": [{"name": "fa", "value": notice.fa}]}]}}
            rows.append((int(notice.participant_id), _encode(body)))
        await self.store.add_notices(rows, time.time_ns())
        self.callbacks.notices_added()

    async def _unlink(self, caller, message, header):
        self._require_kind(caller, programme=False)
        self._check_count(header, len(message.unlink_request))
        answers = []
        for item in message.unlink_request:
            entry = {"reference_id": item.reference_id, "timestamp": now_text()}
            if parse_timestamp(item.timestamp) is None:
                entry.update(status="rjct", status_reason_code="rjct.timestamp.invalid")
            else:
                refused = await self.gateway.mapper_unlink(caller, self._national_id(item.id))
                if refused is None:
                    entry.update(status="succ")
                elif refused.result in (DirectoryResult.MAPPER_ID_NOT_LINKED,
                                        DirectoryResult.MAPPER_NOT_HOLDER):
                    # The same answer whether nobody or another participant holds the link:
                    # an unlink must not tell a bank where someone else banks.
                    entry.update(status="rjct", status_reason_message="not_linked_by_you")
                else:
                    entry.update(status="rjct", status_reason_message="id_invalid")
            answers.append(entry)
        response = {"transaction_id": message.transaction_id, "unlink_response": answers}
        await self.store.put_mapper_txn(caller, message.transaction_id, "unlink",
                                        _encode(response), time.time_ns())
        return "unlink", response, _counts(answers)

    async def _resolve(self, caller, message, header):
        # Resolving says which bank a person uses: only programmes may, and they are
        # vetted participants onboarded by the operators, so the end-user anti-enumeration
        # buckets do not apply (docs/g2p.md, "Who may resolve").
        self._require_kind(caller, programme=True)
        self._check_count(header, len(message.resolve_request))
        answers = []
        tokens, positions = [], []
        for item in message.resolve_request:
            entry = {"reference_id": item.reference_id, "timestamp": now_text()}
            token = self.gateway.identity_token(self._national_id(item.id)) if item.id else None
            if parse_timestamp(item.timestamp) is None:
                entry.update(status="rjct", status_reason_code="rjct.timestamp.invalid")
            elif token is None or type(token) is Rejection:
                entry.update(status="rjct", status_reason_code="rjct.id.invalid")
            else:
                tokens.append(token)
                positions.append((len(answers), item.scope))
            answers.append(entry)
        if tokens:
            routes = await self.gateway.mapper_resolve_tokens(tokens)
            for (index, scope), route in zip(positions, routes):
                entry = answers[index]
                if type(route) is Rejection:
                    entry.update(status="succ", status_reason_code="succ.id.not_found")
                    continue
                entry.update(status="succ", status_reason_code="succ.id.active")
                if scope == "details":
                    entry["fa"] = f"{route[1]}@{route[0]}"
                    entry["account_provider_info"] = {"code": str(route[0]),
                                                      "name": self._name(route[0])}
        response = {"transaction_id": message.transaction_id, "resolve_response": answers}
        await self.store.put_mapper_txn(caller, message.transaction_id, "resolve",
                                        _encode(response), time.time_ns())
        return "resolve", response, _counts(answers)

    def _name(self, participant_id: int) -> str:
        view = self.gateway.participant(participant_id)
        return "" if view is None else view.name

    async def _mapper_txn(self, caller, message, header):
        query = message.txnstatus_request
        if query.txn_type not in ("link", "update", "unlink", "resolve"):
            raise _Refusal(error(Result.VALIDATION_ERROR, "txn_type is a mapper action"))
        if query.attribute_type != "transaction_id" or not isinstance(query.attribute_value, str):
            raise _Refusal(error(Result.VALIDATION_ERROR,
                                 "attribute_type transaction_id is supported"))
        found = await self.store.get_mapper_txn(caller, query.attribute_value, query.txn_type)
        if found is None:
            raise _Refusal(error(Result.G2P_BATCH_NOT_FOUND, "no such transaction", 404))
        response = {"transaction_id": message.transaction_id,
                    "txnstatus_response": {"txn_type": f"on-{query.txn_type}",
                                           "txn_status": msgspec.json.decode(found)}}
        return "status", response, {"status": "succ"}

    # -- disbursement ----------------------------------------------------------------

    def _check_count(self, header: m.Header, count: int) -> None:
        if header.total_count != count:
            raise _Refusal(error(Result.VALIDATION_ERROR,
                                 "header.total_count must equal the number of items "
                                 "(rjct.total_count.invalid)"))

    async def _disburse(self, caller, message, header):
        self._require_kind(caller, programme=True)
        rows = message.disbursements
        if len(rows) > limits.MESSAGE_ROWS_MAX:
            raise _Refusal(error(Result.G2P_MESSAGE_TOO_LARGE,
                                 f"at most {limits.MESSAGE_ROWS_MAX} disbursements a message "
                                 "(rjct.total_count.limit_exceeded); send a batch in several "
                                 "messages under one transaction_id"))
        self._check_count(header, len(rows))
        if not self.gateway.accepting:
            raise _Refusal(error(Result.SERVICE_UNAVAILABLE, "the switch is not accepting"))
        batch = await self.store.find_batch(caller, message.transaction_id)
        currency = batch.currency if batch is not None else self.config.currency
        if batch is not None and batch.state is BatchState.CANCELLED:
            raise _Refusal(error(Result.G2P_BATCH_CLOSED, "the batch was cancelled"))
        statuses: list[dict | None] = []
        fresh: list[NewRow] = []
        positions: list[int] = []
        now = now_text()
        for index, row in enumerate(rows):
            if index and not index % limits.ROWS_PER_LOOP_TURN:
                await asyncio.sleep(0)  # live payments go between (a message is 10,000 rows)
            checked = self._row(row, currency)
            if type(checked) is str:
                statuses.append({"reference_id": row.reference_id, "timestamp": now,
                                 "status": "rjct", "status_reason_code": checked})
                continue
            positions.append(len(statuses))
            statuses.append(None)
            fresh.append(checked)
        if fresh:
            if batch is None:
                open_batches = [b for b in await self.store.list_batches(
                    caller, limits.OPEN_BATCHES_PER_PROGRAMME_MAX + 1)
                    if b.state not in (BatchState.COMPLETED, BatchState.CANCELLED)]
                if len(open_batches) >= limits.OPEN_BATCHES_PER_PROGRAMME_MAX:
                    raise _Refusal(error(Result.SERVER_BUSY, "too many open batches"))
                batch = await self.store.open_batch(caller, message.transaction_id, currency,
                                                    time.time_ns())
            codes = await self.store.add_rows(batch.batch_id, fresh, limits.BATCH_ROWS_MAX,
                                              time.time_ns())
            if codes is None:
                raise _Refusal(error(Result.G2P_BATCH_TOO_LARGE,
                                     f"a batch holds at most {limits.BATCH_ROWS_MAX} rows"))
            for turn, (index, code, row) in enumerate(zip(positions, codes, fresh)):
                if turn and not turn % limits.ROWS_PER_LOOP_TURN:
                    await asyncio.sleep(0)
                entry = {"reference_id": row.reference_id, "timestamp": now,
                         "status": "pdng", "amount": reports.amount_text(
                             row.amount_minor, currency),
                         "currency_code": currency}
                if code == ROW_DUPLICATE:
                    entry = {"reference_id": row.reference_id, "timestamp": now,
                             "status": "rjct",
                             "status_reason_code": "rjct.reference_id.duplicate"}
                elif code == ROW_EXISTS:
                    entry["status_reason_message"] = "already_in_batch"
                statuses[index] = entry
            record = await self.store.get_batch(batch.batch_id)
            await self.engine.rows_added(record, sum(1 for code in codes if code == ROW_ADDED))
        elif batch is None:
            # Nothing valid, no batch: nothing is created.
            pass
        response = {"transaction_id": message.transaction_id,
                    "disbursements_status": statuses}
        return "disburse", response, {"status": "rcvd" if fresh else "rjct",
                                      "total_count": len(rows),
                                      "completed_count": 0}

    def _row(self, row: m.Disbursement, currency: str) -> NewRow | str:
        """A validated row, or the spec's status_reason_code for the first field at fault.
        A national ID becomes its identity token here."""
        if not _ACCOUNT_REF.match(row.reference_id) or len(
                row.reference_id) > limits.REFERENCE_ID_LENGTH_MAX:
            return "rjct.reference_id.invalid"
        if row.scheduled_timestamp:
            return "rjct.schedule_ts.invalid"  # immediate disbursement only
        if row.currency_code and row.currency_code != currency:
            return "rjct.currency_code.invalid"
        amount_minor = _amount_minor(row.amount, currency)
        if amount_minor is None:
            return "rjct.amount.invalid"
        payee = row.payee_fa
        if payee.endswith(self._provider_suffix):
            token = self.gateway.identity_token(payee[:-len(self._provider_suffix)])
            if type(token) is Rejection:
                return "rjct.payee_fa.invalid"
            return NewRow(row.reference_id, int(PayeeKind.NATIONAL_ID), token.hex(),
                          amount_minor)
        account_ref, at, provider = payee.rpartition("@")
        if (not at or not provider.isdigit() or len(provider) > 8
                or not _ACCOUNT_REF.match(account_ref)
                or self.gateway.participant(int(provider)) is None):
            return "rjct.payee_fa.invalid"
        return NewRow(row.reference_id, int(PayeeKind.FINANCIAL_ADDRESS),
                      f"{account_ref}@{int(provider)}", amount_minor)

    async def _own_batch(self, caller: int, transaction_id: str):
        batch = await self.store.find_batch(caller, transaction_id)
        if batch is None:
            raise _Refusal(error(Result.G2P_BATCH_NOT_FOUND, "no such batch"))
        return batch

    async def _disburse_txn(self, caller, message, header):
        self._require_kind(caller, programme=True)
        query = message.txnstatus_request
        if query.txn_type != "disburse":
            raise _Refusal(error(Result.VALIDATION_ERROR, "txn_type must be disburse"))
        if query.attribute_type == "transaction_id" and isinstance(query.attribute_value, str):
            batch = await self._own_batch(caller, query.attribute_value)
            if batch.rows_total > limits.STATUS_ROWS_MAX:
                raise _Refusal(error(Result.VALIDATION_ERROR,
                                     f"the batch has more than {limits.STATUS_ROWS_MAX} rows "
                                     "(rjct.srch.too_many_records_found): ask by "
                                     "reference_id_list or download the report"))
            rows = await self.store.rows_page(batch.batch_id, 0, limits.STATUS_ROWS_MAX)
        elif query.attribute_type == "reference_id_list" and isinstance(
                query.attribute_value, list):
            # The batch is the one this status request names as its transaction_id.
            batch = await self._own_batch(caller, message.transaction_id)
            rows = await self.store.rows_by_reference(batch.batch_id, query.attribute_value)
        else:
            raise _Refusal(error(Result.VALIDATION_ERROR,
                                 "attribute_type transaction_id or reference_id_list"))
        view = await self.engine.batch_view(batch.batch_id)
        record, counts, _rate = view
        response = {"transaction_id": message.transaction_id,
                    "txnstatus_response": {"txn_type": "on-disburse", "txn_status": {
                        "transaction_id": record.transaction_id,
                        "disbursements_status": [reports.spec_row(record, row)
                                                 for row in rows]}}}
        return "status", response, {"status": "succ", "total_count": record.rows_total,
                                    "completed_count": counts.paid + counts.failed
                                    + counts.cancelled}

    async def _search(self, caller, message, header):
        self._require_kind(caller, programme=True)
        self._check_count(header, len(message.search_criteria))
        results = []
        for criterion in message.search_criteria:
            entry = {"reference_id": criterion.reference_id, "timestamp": now_text()}
            key = None
            if criterion.attribute_type == "payee_fa":
                value = criterion.attribute_value
                if value.endswith(self._provider_suffix):
                    token = self.gateway.identity_token(value[:-len(self._provider_suffix)])
                    key = None if type(token) is Rejection else token.hex()
                else:
                    account_ref, at, provider = value.rpartition("@")
                    if at and provider.isdigit() and _ACCOUNT_REF.match(account_ref):
                        key = f"{account_ref}@{int(provider)}"
            if key is None:
                entry.update(status="rjct", status_reason_code=(
                    "rjct.srch_payee_fa.invalid" if criterion.attribute_type == "payee_fa"
                    else "rjct.srch_payer_fa.invalid"))
                results.append(entry)
                continue
            found = await self.store.rows_by_payee(caller, key, 100)
            entry.update(status="succ", disbursements=[
                {"transaction_id": transaction_id, **reports.spec_row(
                    _RecordShim(transaction_id, self.config.currency), row)}
                for transaction_id, row in found])
            results.append(entry)
        response = {"transaction_id": message.transaction_id, "disbursements_status": results}
        return "search", response, _counts(results)

    def _batch_done(self, record, counts) -> None:
        """on-disburse when a batch completes: its counts in the header; the rows are read
        with txn/status or the report."""
        body = _encode({"header": {"version": "1.0.0", "message_id": self._next_correlation(),
                                   "message_ts": now_text(), "action": "on-disburse",
                                   "status": "succ", "total_count": record.rows_total,
                                   "completed_count": counts.paid + counts.failed
                                   + counts.cancelled, "sender_id": "ponte"},
                        "message": {"transaction_id": record.transaction_id,
                                    "correlation_id": self._next_correlation(),
                                    "disbursements_status": []}})
        self.callbacks.send(record.programme_id, b"/on-disburse", body)

    # -- reports -----------------------------------------------------------------------

    async def _report(self, request: Request) -> Response:
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        if self.gateway.participant_kind(caller) != "government":
            return error(Result.G2P_NOT_A_PROGRAMME, "reports are the programme's")
        parts = request.path.split(b"/")  # ['', 'g2p', 'batches', txn?, what?]
        if len(parts) == 3:
            batches = await self.store.list_batches(caller, limits.BATCHES_LISTED_MAX)
            listed = []
            for batch in batches:
                record, counts, rate = await self.engine.batch_view(batch.batch_id)
                listed.append(reports.summary(record, counts, rate))
            return Response(200, _encode({"batches": listed}))
        if len(parts) != 5:
            return error(Result.VALIDATION_ERROR, "no such resource", 404)
        try:
            transaction_id = parts[3].decode("ascii")
        except UnicodeDecodeError:
            transaction_id = ""
        if not transaction_id_valid(transaction_id):
            return error(Result.VALIDATION_ERROR, "the path's transaction id is malformed")
        batch = await self.store.find_batch(caller, transaction_id)
        if batch is None:
            return error(Result.G2P_BATCH_NOT_FOUND, "no such batch")
        record, counts, rate = await self.engine.batch_view(batch.batch_id)
        what = parts[4]
        if what == b"summary":
            return Response(200, _encode(reports.summary(record, counts, rate)))
        if what not in (b"rows.csv", b"rows.json"):
            return error(Result.VALIDATION_ERROR, "no such resource", 404)
        page = 1
        if request.query:
            values = parse_qs(request.query.decode("ascii", "replace")).get("page")
            if values:
                if not _PAGE.match(values[0].encode()):
                    return error(Result.VALIDATION_ERROR, "page is a number from 1")
                page = int(values[0])
        page_size = limits.REPORT_PAGE_ROWS
        pages = max(1, -(-record.rows_total // page_size))
        # Row numbers are dense from 1, so a page is a range of them.
        rows = await self.store.rows_page(record.batch_id, (page - 1) * page_size, page_size)
        headers = ((b"x-total-pages", str(pages).encode()),)
        if what == b"rows.csv":
            body = (reports.CSV_HEADER + reports.csv_lines(record, rows)).encode("ascii")
            return Response(200, body, content_type=b"text/csv; charset=us-ascii",
                            headers=headers)
        return Response(200, _encode({
            "transaction_id": record.transaction_id,
            "disbursements_status": [reports.spec_row(record, row) for row in rows],
            "pagination": {"page_size": page_size, "page_number": page,
                           "total_count": record.rows_total}}), headers=headers)


@functools.lru_cache(maxsize=4_096)
def _amount_minor(text: str, currency: str) -> int | None:
    """A row's decimal amount in minor units, or None if malformed or out of bounds
    (cached: a programme's rows repeat a few amounts)."""
    match = _AMOUNT.match(text)
    if match is None:
        return None
    digits = exponent(currency)
    fraction = match.group(2)
    if len(fraction) > max(1, digits) or (digits == 0 and fraction != "0"):
        return None
    amount_minor = int(match.group(1)) * 10 ** digits + int(fraction.ljust(digits, "0") or 0)
    if not 1 <= amount_minor <= core_limits.AMOUNT_MINOR_MAX:
        return None
    return amount_minor


class _RecordShim:
    __slots__ = ("transaction_id", "currency")

    def __init__(self, transaction_id: str, currency: str) -> None:
        self.transaction_id = transaction_id
        self.currency = currency


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("refused")
        self.response = response


# The header.action each request must carry (txn/status requests may name theirs freely).
_ACTIONS = frozenset({"link", "update", "unlink", "resolve", "disburse", "search"})
_CALLBACK_PATHS = {
    "link": b"/mapper/on-link", "update": b"/mapper/on-update",
    "unlink": b"/mapper/on-unlink", "resolve": b"/mapper/on-resolve",
    "mapper_txn": b"/mapper/txn/on-status", "disburse": b"/on-disburse",
    "search": b"/disburse/on-search", "disburse_txn": b"/disburse/txn/on-status",
}


def _counts(answers: list[dict]) -> dict:
    failed = sum(1 for answer in answers if answer.get("status") == "rjct")
    return {"status": "rjct" if failed == len(answers) else "succ",
            "total_count": len(answers), "completed_count": len(answers)}


async def start_g2p(gateway, config: G2PConfig, store, report_dir: str):
    """The engine and the connector on `store`, started; (connector, engine)."""
    from switch.g2p.engine import Engine

    engine = Engine(gateway, store, config)
    connector = G2PConnector(gateway, engine, store, config, report_dir)
    await engine.start()
    try:
        await connector.start()
    except BaseException:
        await engine.close()
        raise
    return connector, engine


__all__ = ["G2PConnector", "error", "start_g2p"]
