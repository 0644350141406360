"""Every bound of the GSMA Mobile Money connector in one place, with the asserts that relate
them. Nothing else in `connectors/mobilemoney/` hard-codes a size or a duration.
"""

from connectors.http import limits as http_limits
from switch.core import limits as core_limits

# -- what wallets send the hub ----------------------------------------------------------
# One transaction body with every optional field the spec allows is a few KiB; a batch is
# at most BATCH_ROWS_MAX of them. The HTTP server refuses larger bodies with 413.
REQUEST_BODY_BYTES_MAX = 16 * 1024
BATCH_BODY_BYTES_MAX = 4 * 1024 * 1024
BATCH_ROWS_MAX = 10_000  # rows one POST /batchtransactions may carry
PARTIES_MAX = 10  # debitParty / creditParty entries (the spec's maxItems)
METADATA_MAX = 20  # the spec's maxItems
TEXT_256_MAX = 256  # the spec's common string bound
DESCRIPTION_TEXT_MAX = 160

# -- what the hub remembers -------------------------------------------------------------
# Request states (one per POST the hub accepted), by the caller's X-CorrelationID and by the
# serverCorrelationId it issued; oldest forgotten first. At 5,000 payments/s this holds the
# last ~100 s: a wallet polls within seconds; older outcomes stay readable through
# GET /transactions/{transactionReference} and GET /responses/{clientCorrelationId}.
REQUEST_STATES_MAX = 524_288
BATCHES_MAX = 1_024  # batches remembered (rows count against BATCH_ROWS_TOTAL_MAX too)
BATCH_ROWS_TOTAL_MAX = 1_000_000  # rows of all remembered batches
BATCH_ROWS_IN_FLIGHT_MAX = 512  # rows of one batch submitted and not final yet
BATCH_ROWS_PER_S_MAX = 2_000  # rows of one batch submitted per second
BATCH_TICK_MS = 20  # how often a batch submits its next rows
RESULTS_PAGE_MAX = 500  # completions / rejections returned per GET (limit parameter)
RESULTS_PAGE_DEFAULT = 50  # the spec's default page
STATUS_QUERIES_IN_FLIGHT_PER_WALLET_MAX = 64  # GET /transactions, reversals without amount
OAUTH_TOKENS_MAX = 4_096  # live bearer tokens over all wallets
OAUTH_TOKEN_TTL_S = 3_600
OAUTH_TOKENS_PER_WALLET_MAX = 16  # the oldest is dropped past this

# -- what the hub sends wallets (callbacks, credits, polls, reversals) --------------------
OUTBOUND_QUEUE_PER_WALLET_MAX = 65_536  # requests waiting for one wallet's endpoint
OUTBOUND_CONNECTIONS_PER_WALLET_MAX = 4
OUTBOUND_IN_FLIGHT_PER_CONNECTION_MAX = 128
OUTBOUND_ATTEMPTS_MAX = 6
OUTBOUND_BACKOFF_MS_MIN = 50
OUTBOUND_BACKOFF_MS_MAX = 5_000
OUTBOUND_TIMEOUT_MS = 10_000
OUTBOUND_ORIGINS_PER_WALLET_MAX = 4  # distinct callback origins one wallet may use
POLL_INTERVAL_MS = 200  # polling a wallet's GET /requeststates for a credit's answer
POLLS_PER_CREDIT_MAX = 300
CREDITS_AWAITING_MAX = 262_144  # credits sent to wallets and not answered yet
REVERSALS_AWAITING_MAX = 65_536  # credits a wallet completed after Ponte stopped waiting

# -- transfers ----------------------------------------------------------------------------
EXPIRY_MS_DEFAULT = 30_000  # a payment's expires_at_ns: now + this
QUOTE_LIFETIME_MS = 60_000

assert REQUEST_BODY_BYTES_MAX == http_limits.REQUEST_BODY_BYTES_MAX
assert REQUEST_BODY_BYTES_MAX < BATCH_BODY_BYTES_MAX
assert BATCH_ROWS_MAX <= BATCH_ROWS_TOTAL_MAX
assert BATCH_ROWS_IN_FLIGHT_MAX <= BATCH_ROWS_MAX
assert RESULTS_PAGE_DEFAULT <= RESULTS_PAGE_MAX
assert OUTBOUND_BACKOFF_MS_MIN <= OUTBOUND_BACKOFF_MS_MAX
assert EXPIRY_MS_DEFAULT <= core_limits.EXPIRY_MS_MAX_DEFAULT
assert POLL_INTERVAL_MS * POLLS_PER_CREDIT_MAX >= EXPIRY_MS_DEFAULT
assert len(str(BATCH_ROWS_MAX)) + 1 + len("batch-") + 36 <= core_limits.ID_LENGTH_MAX
