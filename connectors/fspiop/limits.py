"""Every bound of the FSPIOP connector in one place, with the asserts that relate them.

The HTTP framing bounds (header and body sizes, connections) are the HTTP connector's
(`connectors/http/limits.py`): the FSPIOP listener is the same server. What is here bounds
the conversations the hub keeps in memory between a request and its callback.
"""

from connectors.http import limits as http_limits
from switch.core import limits as core_limits

# Conversations that do not move money (party lookups, quotes, transaction requests) wait
# for the counterparty's callback in bounded tables; past the bound the oldest is dropped
# (its callback then finds nothing and is answered with an error callback).
PARTY_LOOKUPS_PENDING_MAX = 65_536
QUOTES_PENDING_MAX = 65_536
TRANSACTION_REQUESTS_PENDING_MAX = 16_384
# Conversation steps waiting on the directory or the sequencer (lookups, registrations,
# status queries), over all participants: past it a request is answered 503 at once.
TASKS_IN_FLIGHT_MAX = 8_192
# Transfers: what the hub keeps to forward a prepare and its fulfil with the original
# signatures. Bounded by the core's in-flight table (core.in_flight_max) at most.
TRANSFERS_REMEMBERED_MAX = core_limits.IN_FLIGHT_MAX_DEFAULT * 2
# Final transfers whose parties the hub still knows by FSPIOP transfer id (~200 bytes
# each), so the payee DFSP may GET one after it is final: the core's status query needs
# the payer, which the payee's request does not name. Older ones, and those final before
# a restart, are answered for the payer only (3208 to the payee).
FINISHED_REMEMBERED_MAX = 200_000
# Prepares written to the prepare store (connectors/fspiop/store.py) and not yet durable:
# past it a new prepare is answered 503 (2005) before anything is recorded.
PREPARES_UNWRITTEN_MAX = 16_384
# Credit requests re-sent after a restart whose prepare is being read back from the store.
PREPARE_LOADS_PENDING_MAX = core_limits.IN_FLIGHT_MAX_DEFAULT
# A stored prepare whose transfer never reported final (a crash between the outcome and its
# delete) is pruned this long after the prepare's own expiry; pruning runs at start and
# every PREPARES_PRUNE_INTERVAL_S.
PREPARES_KEPT_PAST_EXPIRY_S = 3_600
PREPARES_PRUNE_INTERVAL_S = 600
# FSPIOP ids are UUIDs (CorrelationId); party ids at most 128 characters (PartyIdentifier).
CORRELATION_ID_LENGTH = 36
PARTY_IDENTIFIER_LENGTH_MAX = 128
FSP_ID_LENGTH_MAX = 32
ERROR_DESCRIPTION_LENGTH_MAX = 128
ILP_PACKET_LENGTH_MAX = 8_192  # the SDK's packets are ~1 KiB; the spec allows 32 KiB
PUBLIC_KEY_PEM_BYTES_MAX = http_limits.PUBLIC_KEY_PEM_BYTES_MAX
# The headers a forwarded request carries unchanged (the signature binds several of them).
FORWARDED_HEADERS_MAX = 12
# Status queries (GET /transfers/{ID}) one participant may have waiting on the sequencer.
STATUS_QUERIES_IN_FLIGHT_PER_PARTICIPANT_MAX = 64

assert ILP_PACKET_LENGTH_MAX + 4096 <= http_limits.REQUEST_BODY_BYTES_MAX  # the rest of a prepare
assert TRANSFERS_REMEMBERED_MAX >= core_limits.IN_FLIGHT_MAX_DEFAULT
assert PARTY_IDENTIFIER_LENGTH_MAX <= core_limits.REFERENCE_LENGTH_MAX
assert CORRELATION_ID_LENGTH <= core_limits.ID_LENGTH_MAX
assert ERROR_DESCRIPTION_LENGTH_MAX <= core_limits.TEXT_LENGTH_MAX
