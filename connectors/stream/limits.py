"""Every bound of the stream connector in one place, with the asserts that relate them.

Both ends use them: the server refuses a frame whose announced length is past
FRAME_BYTES_MAX before reading a byte of it, and the SDK never writes one. Nothing here may
depend on configuration read at run time.
"""

# A frame is a u32 big-endian length and that many bytes of msgpack. The largest legitimate
# frame is a bulk alias registration of ALIASES_PER_FRAME_MAX rows (~300 B each).
FRAME_HEADER_BYTES = 4
FRAME_BYTES_MAX = 1024 * 1024
ALIASES_PER_FRAME_MAX = 2_000

# Requests a connection may have taken by the server and not yet sequenced (decided and
# durable). When the window is full the server stops reading the socket: TCP pushes back.
WINDOW_MAX_DEFAULT = 4_096
WINDOW_MAX_CEILING = 65_536
# Reading resumes when the window has drained to this fraction.
WINDOW_RESUME_FRACTION = 0.5

# Bytes the server may hold for a connection that does not read what it is sent. Past it
# the participant is a slow consumer: the connection is closed (outcomes stay retrievable
# by status query, and a resend answers the same).
WRITE_BUFFER_HIGH_BYTES = 4 * 1024 * 1024
WRITE_BUFFER_LOW_BYTES = 1 * 1024 * 1024
SLOW_CONSUMER_BYTES_MAX = 64 * 1024 * 1024

# The client must say Hello within this time of connecting.
HANDSHAKE_TIMEOUT_S = 5.0
# Hello's text fields (protocol.Hello takes its bounds from here).
HELLO_API_KEY_LENGTH_MAX = 256
HELLO_CLIENT_NAME_LENGTH_MAX = 64
# Before the handshake a frame can only be a Hello, and nobody is authenticated yet: the
# reader refuses a longer announced length (FRAME_TOO_LARGE) instead of buffering up to
# FRAME_BYTES_MAX for a stranger. The largest Hello the type admits: a map header (1 byte),
# the tag and the field names ("type", "hello", "version", "api_key", "client_name", each a
# one-byte str header and its text), the version as msgpack's largest int (9 bytes) and the
# two strings at 4 UTF-8 bytes a character behind a str16 header (3 bytes).
_HELLO_NAMES_BYTES = sum(1 + len(name) for name in
                         ("type", "hello", "version", "api_key", "client_name"))
HELLO_FRAME_BYTES_MAX = (1 + _HELLO_NAMES_BYTES + 9
                         + 3 + 4 * HELLO_API_KEY_LENGTH_MAX
                         + 3 + 4 * HELLO_CLIENT_NAME_LENGTH_MAX)
# Connections per server and per participant.
CONNECTIONS_MAX = 4_096
CONNECTIONS_PER_PARTICIPANT_MAX = 64
# Connections from one remote address, counted from accept (before any handshake), so one
# host cannot take every slot of the server. A participant may need up to
# CONNECTIONS_PER_PARTICIPANT_MAX, and a hosting provider may carry a few participants from
# one address; behind a proxy that hides client addresses, raise it
# (`stream_connections_per_address_max`).
CONNECTIONS_PER_ADDRESS_MAX_DEFAULT = 256
# Resolve, status and alias-registration calls awaited per connection at once (each holds a
# task).
CALLS_IN_FLIGHT_MAX = 1_024
# Status queries one connection may have waiting for their answer. Each is an item on the
# sequencer's inbound queue, in front of every participant's payments: past the bound a
# query is answered SERVER_BUSY at once and never queued, so one connection's flood cannot
# crowd out another participant's transfers (the gateway bounds them per participant too).
# A reconciling participant pipelines them in windows of this size.
STATUS_QUERIES_IN_FLIGHT_MAX = 64
# Resolves one connection may have waiting for the directory (same rule). A payer's resolve
# precedes each of its payments, so the bound is larger.
RESOLVES_IN_FLIGHT_MAX = 256

# The SDK: transfers a client keeps open (sent, final answer not yet received) before
# `room()` makes a pipelined sender wait.
CLIENT_PENDING_TRANSFERS_MAX_DEFAULT = 50_000
# Switch addresses one client cycles through (a primary and its standbys).
CLIENT_ADDRESSES_MAX = 16

PROTOCOL_VERSION = 1
DETAIL_LENGTH_MAX = 200

assert FRAME_HEADER_BYTES == 4
assert FRAME_BYTES_MAX < 2**32
assert 4 * max(HELLO_API_KEY_LENGTH_MAX, HELLO_CLIENT_NAME_LENGTH_MAX) < 2**16  # str16
assert HELLO_FRAME_BYTES_MAX < FRAME_BYTES_MAX
assert CONNECTIONS_PER_PARTICIPANT_MAX <= CONNECTIONS_PER_ADDRESS_MAX_DEFAULT <= CONNECTIONS_MAX
assert ALIASES_PER_FRAME_MAX * 400 < FRAME_BYTES_MAX
assert 1 <= WINDOW_MAX_DEFAULT <= WINDOW_MAX_CEILING
assert 0.0 < WINDOW_RESUME_FRACTION < 1.0
assert WRITE_BUFFER_LOW_BYTES < WRITE_BUFFER_HIGH_BYTES < SLOW_CONSUMER_BYTES_MAX
assert CALLS_IN_FLIGHT_MAX <= WINDOW_MAX_DEFAULT
assert 1 <= STATUS_QUERIES_IN_FLIGHT_MAX <= CALLS_IN_FLIGHT_MAX
assert 1 <= RESOLVES_IN_FLIGHT_MAX <= CALLS_IN_FLIGHT_MAX
