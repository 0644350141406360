"""Every bound of the HTTP connector in one place, with the asserts that relate them.

The server (`server.py`), the callback sender (`callbacks.py`), the client pool
(`client.py`) and the SDK's HTTP client take their sizes and durations from here; nothing
else in `connectors/http/` hard-codes one.
"""

from switch.core import limits as core_limits

# -- requests the switch accepts --------------------------------------------------------
# The largest core message (a transfer with every optional reference at its maximum) is
# well under 2 KiB of JSON; 16 KiB leaves room for whitespace and is still cheap to buffer.
REQUEST_BODY_BYTES_MAX = 16 * 1024
# The most any connector built on server.py may raise its body bound to (ISO 20022
# batches, GSMA batch uploads).
REQUEST_BODY_BYTES_CEILING = 16 * 1024 * 1024
# The largest body a route named by its first path segment may take (a settlement
# reconciliation's list of transfers; HttpServer large_bodies).
LARGE_REQUEST_BODY_BYTES_MAX = 8 * 1024 * 1024
# A streamed answer (a statement) whose client reads nothing for this long is cut off.
STREAM_STALL_MS = 30_000
# Request line plus all headers. FSPIOP allows 64 KiB; we need far less (an API key, a JWS
# of at most a few hundred bytes) and every byte here is buffered per connection.
REQUEST_HEADER_BYTES_MAX = 8 * 1024
REQUEST_HEADERS_COUNT_MAX = 64
URL_BYTES_MAX = 1024
# Requests a connection may have in flight (pipelined, answered in order). Past it the
# server stops reading from that socket until answers drain: back-pressure, not an error.
REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX = 256
# Status queries (GET /transfers/...) one participant may have waiting on the sequencer, over
# all its connections. Each is an item on the inbound queue in front of every participant's
# payments: past the bound the answer is 503 SERVER_BUSY at once and nothing is queued, so
# one participant's flood cannot crowd out another's transfers.
STATUS_QUERIES_IN_FLIGHT_PER_PARTICIPANT_MAX = 64
# Bytes of answers queued on one connection before the server pauses reading from it.
RESPONSE_BUFFER_BYTES_MAX = 1024 * 1024
CONNECTIONS_MAX = 4096
# Connections from one remote host (HttpConnectorConfig.connections_per_address_max), so one
# host cannot take every slot. A participant's SDK pools a few keep-alive connections; a
# hosting provider may carry several participants from one address. Behind a proxy that
# hides client addresses, raise it.
CONNECTIONS_PER_ADDRESS_MAX_DEFAULT = 256

# -- timers on the server ---------------------------------------------------------------
IDLE_TIMEOUT_MS = 60_000  # a keep-alive connection with nothing in flight
HEADER_TIMEOUT_MS = 10_000  # from the first byte of a request to the end of its headers
BODY_TIMEOUT_MS = 10_000  # from the end of the headers to the end of the body
HANDLER_TIMEOUT_MS = 30_000  # a handler that has not answered by then gets 503
TIMER_SWEEP_MS = 1_000  # one periodic sweep checks every connection's deadlines

# -- callbacks the switch sends ---------------------------------------------------------
CALLBACK_QUEUE_PER_PARTICIPANT_MAX = 65_536  # messages waiting for one participant
CALLBACK_CONNECTIONS_PER_PARTICIPANT_MAX = 4
CALLBACK_IN_FLIGHT_PER_CONNECTION_MAX = 128  # pipelined requests on one connection
CALLBACK_ATTEMPTS_MAX = 8
CALLBACK_BACKOFF_MS_MIN = 50
CALLBACK_BACKOFF_MS_MAX = 10_000
CALLBACK_TIMEOUT_MS = 10_000  # connect, or a response to one request
CALLBACK_URL_BYTES_MAX = core_limits.CALLBACK_URL_LENGTH_MAX  # what onboarding accepts

# -- the client pools (callbacks, SDK) --------------------------------------------------
CLIENT_SWEEP_MS = 250  # how often a pool with requests out checks the oldest's deadline

# -- responses the clients read ---------------------------------------------------------
RESPONSE_BODY_BYTES_MAX = 1024 * 1024  # /openapi.json is the largest answer we read
RESPONSE_HEADER_BYTES_MAX = 16 * 1024

# -- JWS --------------------------------------------------------------------------------
JWS_HEADER_BYTES_MAX = 2048  # the signature header value (protected header + signature)
PUBLIC_KEY_PEM_BYTES_MAX = 8192  # an RSA-4096 public key is ~800 bytes

assert REQUEST_BODY_BYTES_MAX >= 4 * (
    core_limits.REFERENCE_LENGTH_MAX * 6 + core_limits.TEXT_LENGTH_MAX + core_limits.ID_LENGTH_MAX
)
assert URL_BYTES_MAX <= REQUEST_HEADER_BYTES_MAX
assert REQUEST_BODY_BYTES_MAX <= REQUEST_BODY_BYTES_CEILING
assert CALLBACK_CONNECTIONS_PER_PARTICIPANT_MAX <= CONNECTIONS_PER_ADDRESS_MAX_DEFAULT
assert CONNECTIONS_PER_ADDRESS_MAX_DEFAULT <= CONNECTIONS_MAX
assert JWS_HEADER_BYTES_MAX < REQUEST_HEADER_BYTES_MAX
assert CALLBACK_BACKOFF_MS_MIN <= CALLBACK_BACKOFF_MS_MAX
assert CALLBACK_ATTEMPTS_MAX >= 1
assert HEADER_TIMEOUT_MS <= IDLE_TIMEOUT_MS
assert TIMER_SWEEP_MS <= min(HEADER_TIMEOUT_MS, BODY_TIMEOUT_MS)
assert RESPONSE_BODY_BYTES_MAX >= REQUEST_BODY_BYTES_MAX
assert CLIENT_SWEEP_MS < CALLBACK_TIMEOUT_MS
