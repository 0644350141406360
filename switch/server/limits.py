"""Every bound of the server (the I/O shell) in one place, with the asserts that relate them.

Config defaults (`switch/server/config.py`) take their numbers from here; the `*_MAX`
constants bound what a configuration may ask for. Nothing else in switch/server hard-codes
a size or a duration, and nothing here may depend on configuration read at run time.
"""

from switch.core import limits as core_limits
from ledger.journal_limits import RECORD_PAYLOAD_BYTES_MAX

# -- the inbound queue (gateway -> sequencer) ------------------------------------------
# Requests accepted by the gateway and not yet taken by the sequencer. Past it submit()
# answers SERVER_BUSY at once: back-pressure instead of unbounded memory.
INBOUND_QUEUE_MAX_DEFAULT = 65_536
INBOUND_QUEUE_MAX_CEILING = 1 << 22

# Status queries one participant may have waiting at once (queued, being decided or
# waiting for their commit). Past it: SERVER_BUSY at once, so one participant's query
# flood cannot fill the queue ahead of everyone's payments.
STATUS_PER_PARTICIPANT_MAX_DEFAULT = 256
STATUS_PER_PARTICIPANT_MAX_CEILING = 1 << 16
# Status queries one participant may have decided per second, with a burst of one second's
# worth: past it a query waits (counted among the waiting above) until its turn. The bound
# on waiting queries alone does not stop a flood — as fast as answers come back, a flooder
# sends more, and each costs the switch's one deciding core the same as a payment.
# 0: no pacing.
STATUS_RATE_PER_PARTICIPANT_DEFAULT = 1_000.0
# Paced queries wake on this grid (seconds), all of one slot together: one sequencer tick
# for the lot instead of one per query (each tick has a fixed cost).
STATUS_PACING_SLOT_S = 0.02
STATUS_RATE_PER_PARTICIPANT_MAX = 1_000_000.0

# -- the stream listener (connectors/stream/limits.py has the same numbers, which a test
# compares: the server's configuration may not ask the connector for more than it takes)
STREAM_CONNECTIONS_MAX = 4_096
STREAM_CONNECTIONS_PER_ADDRESS_MAX_DEFAULT = 256

# -- the sequencer ---------------------------------------------------------------------
# Events decided per loop tick (one journal record, one durable write). Larger ticks
# amortise the fsync; smaller ones cut latency. 4,096 events of ~250 B is ~1 MB.
TICK_EVENTS_MAX_DEFAULT = 4_096
TICK_EVENTS_MAX_CEILING = 16_384
# The journaled payload of one tick: a msgpack array of encoded events. A tick whose
# payload would pass this bound is cut short (the rest waits for the next tick).
TICK_PAYLOAD_BYTES_MAX = RECORD_PAYLOAD_BYTES_MAX // 2
# Ticks decided but not yet durable (the pipeline: tick N+1 is decided while tick N's
# fsync runs). 2 keeps the disk busy without letting undisclosed decisions pile up.
TICKS_IN_FLIGHT_MAX = 2
# Commits start at least this far apart: a floor on batching under load (each commit costs
# a thread hand-off, an fsync and one socket write per connection) that idle periods
# never pay. It adds at most this much to a reply's latency.
COMMIT_INTERVAL_S_DEFAULT = 0.002
COMMIT_INTERVAL_S_MAX = 0.1

# The sequencer wakes this often when idle, to run due maintenance (snapshots, rotation).
IDLE_WAKE_S = 1.0

# -- snapshots and journal segments ---------------------------------------------------
# The longest tail a restart replays. The tail replays at ~80,000 events a second on the
# reference 2-core box, on top of loading the snapshot (~4-6 s for full tables): 500,000
# gave a 14 s restart (`ponte bench recovery`, 50M-transfer journal), 250,000 halves the
# tail's share. The price is a snapshot twice as often (a forked child, ~6 s of one core
# for full tables): every ~12 s at 10,000 transfers a second, rarer below.
SNAPSHOT_EVERY_EVENTS_DEFAULT = 250_000
SNAPSHOT_EVERY_S_DEFAULT = 600.0
SNAPSHOT_EVERY_S_MIN = 1.0
SNAPSHOTS_RETAINED_DEFAULT = 3  # the newest may be damaged: keep fallbacks
SNAPSHOTS_RETAINED_MAX = 64
JOURNAL_SEGMENT_BYTES_DEFAULT = 256 * 1024 * 1024
JOURNAL_SEGMENT_BYTES_MIN = 4 * 1024  # tiny segments make tests rotate
JOURNAL_SEGMENT_BYTES_MAX = 16 * 1024 * 1024 * 1024

# -- the durable transfer history ---------------------------------------------------
HISTORY_RETENTION_DAYS_DEFAULT = 400
HISTORY_RETENTION_DAYS_MAX = 10 * 366
HISTORY_FLUSH_INTERVAL_S = 0.1
HISTORY_BATCH_ROWS_MAX = 10_000
HISTORY_PRUNE_INTERVAL_S = 3_600.0
# New work is refused (SERVER_BUSY) while memory holds more than this many times
# outcomes_archived_max outcomes the history has not confirmed (a store down or slow).
HISTORY_UNCONFIRMED_FACTOR = 4
# A tick waits at most this long for the history's rows; after a failure the store is left
# alone this long (what needs it is refused SERVICE_UNAVAILABLE meanwhile).
HISTORY_READ_TIMEOUT_S = 1.0
HISTORY_RETRY_S = 1.0

# -- timers ----------------------------------------------------------------------------
# Transfers in flight, open requests-to-pay, and one settlement cut-off per currency.
TIMERS_MAX = (core_limits.IN_FLIGHT_MAX_DEFAULT + core_limits.REQUESTS_TO_PAY_RETAINED_MAX_DEFAULT
              + core_limits.CURRENCIES_MAX)

# -- outcomes archive (answers ConsultStore for transfers the core no longer holds) ----
# A second tier behind the core's own window (~150 B per outcome, encoded).
OUTCOMES_ARCHIVED_MAX_DEFAULT = 1 << 18

# -- routing cache: a payer's resolve answer, consumed by its next transfer to that alias
ROUTES_REMEMBERED_MAX = 1 << 18
ROUTE_TTL_NS = 60 * 1_000_000_000

# -- held re-sends: how long a participant has, after the switch restarted, to use a door
# (connect a stream, make an HTTP request) before its held credit requests go to its
# callback URL. Shorter than the payee timeout, so the payee still has time to answer.
HELD_GRACE_S_DEFAULT = 5.0
HELD_GRACE_S_MAX = 60.0

# -- directory calls -------------------------------------------------------------------
# Resolves submitted like requests (answered through the sink) awaited at once.
RESOLVES_IN_FLIGHT_MAX = 10_000
# Transfers resolved per tick with one resolve_many round trip.
RESOLVE_BATCH_MAX = 4_096
DIRECTORY_TIMEOUT_S = 5.0

# -- shutdown --------------------------------------------------------------------------
SHUTDOWN_DRAIN_S_DEFAULT = 5.0
SHUTDOWN_DRAIN_S_MAX = 600.0

# -- credentials -----------------------------------------------------------------------
API_KEY_RANDOM_BYTES = 32  # 256 bits: far beyond guessing, so one HMAC is enough
PEPPER_BYTES_MIN = 32
CALLBACK_URL_LENGTH_MAX = core_limits.CALLBACK_URL_LENGTH_MAX
PARTICIPANT_NAME_LENGTH_MAX = core_limits.TEXT_LENGTH_MAX

# -- admin surface ---------------------------------------------------------------------
ADMIN_BODY_BYTES_MAX = 64 * 1024
ADMIN_HEADER_BYTES_MAX = 16 * 1024
ADMIN_REQUEST_TIMEOUT_S = 10.0
ADMIN_CONNECTIONS_MAX = 64

assert 1 <= INBOUND_QUEUE_MAX_DEFAULT <= INBOUND_QUEUE_MAX_CEILING
assert 1 <= TICK_EVENTS_MAX_DEFAULT <= TICK_EVENTS_MAX_CEILING
assert TICK_EVENTS_MAX_DEFAULT <= INBOUND_QUEUE_MAX_DEFAULT
assert TICKS_IN_FLIGHT_MAX >= 1
assert STATUS_PER_PARTICIPANT_MAX_DEFAULT <= STATUS_PER_PARTICIPANT_MAX_CEILING
assert HELD_GRACE_S_DEFAULT * 1000 < core_limits.PAYEE_TIMEOUT_MS_DEFAULT
assert RESOLVE_BATCH_MAX <= 4_096  # the directory's resolve_many bound
assert TIMERS_MAX >= core_limits.IN_FLIGHT_MAX_DEFAULT
assert API_KEY_RANDOM_BYTES >= 16
