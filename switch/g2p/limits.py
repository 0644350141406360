"""Every bound of the G2P engine and its connector, with asserts that relate them."""

from __future__ import annotations

from switch.core import limits as core_limits

# A batch: rows a programme may put under one transaction_id.
BATCH_ROWS_MAX = 1_000_000
# One /disburse message: rows, and its body in bytes (about 300 bytes a row).
MESSAGE_ROWS_MAX = 10_000
REQUEST_BODY_BYTES_MAX = 8 * 1024 * 1024
# Rows of a /disburse message validated, or answered, between two turns of the event loop:
# a 10,000-row message must not hold live payments back. At 512 (a few ms a turn) a
# million-row upload held the journal's commit loop behind the intake: commit lag p99 50-100
# ms, end-to-end p99 50-250 ms, ~1,000 transfers/s released of 2,000 live offered; at 64,
# 25 ms, 25-50 ms and 1,500-3,000/s with the engine paying rows meanwhile (docs/g2p.md).
ROWS_PER_LOOP_TURN = 64
# Mapper requests in one link / update / unlink / resolve message.
MAPPER_ITEMS_MAX = 1_000
# Rows answered by one txn/status or search (beyond: ask by reference list or download
# the report).
STATUS_ROWS_MAX = 10_000
REFERENCE_LIST_MAX = 10_000
# Batches one programme may have that are not finished (active or paused).
OPEN_BATCHES_PER_PROGRAMME_MAX = 64
BATCHES_LISTED_MAX = 1_000

# The engine's window: rows submitted and not yet final, over all batches. It stays within
# the core's in-flight table; a row re-submitted after a restart finds its transfer held by
# the core, the outcome archive or the durable history (see docs/g2p.md).
IN_FLIGHT_ROWS_MAX_DEFAULT = 4_096
IN_FLIGHT_ROWS_MAX_CEILING = 65_536
# Rows taken from the store, resolved and submitted in one pump step (and the most the rate
# lets accumulate: 10 ms of it, never more than this).
# Small, so that one sequencer tick never carries more than a few milliseconds of batch rows
# in front of live payments.
SUBMIT_CHUNK_MAX = 256
# Outcomes buffered before a store write (the flusher also writes every FLUSH_INTERVAL_S).
FLUSH_ROWS_MAX = 8_192
FLUSH_INTERVAL_S = 0.05
# Outcomes waiting for the store beyond which the pump submits nothing more.
OUTCOMES_BUFFERED_MAX = 4 * FLUSH_ROWS_MAX
PUMP_INTERVAL_S = 0.005
# Pacing: rows per second, and the live-traffic yield: while the switch's inbound queue is
# deeper than this, no row is submitted.
RATE_ROWS_PER_S_DEFAULT = 12_000
RATE_ROWS_PER_S_MAX = 200_000
LIVE_QUEUE_DEPTH_MAX_DEFAULT = 256
# A funding pause probes again after this long, with a window of one row.
FUNDING_PROBE_S_DEFAULT = 5.0
# How far ahead a row's transfer expires.
TRANSFER_EXPIRY_MS_DEFAULT = 60_000
# A row whose payee did not answer in time (its transfer expired, nothing paid) is tried
# again under its next attempt while its attempt number (funding pauses count too) is below
# this; then it fails `payee_unavailable`.
PAYEE_UNAVAILABLE_ATTEMPTS_MAX = 3
# The engine's window (switch/g2p/window.py) follows the rows' round trips between this and
# `in_flight_rows_max`, starting here.
WINDOW_ROWS_MIN = 64
# Callbacks (on-disburse, on-link, moved-out notices) waiting for delivery.
CALLBACK_QUEUE_MAX = 4_096
CALLBACK_ATTEMPTS_MAX = 6
NOTICES_PER_PASS_MAX = 256
# Reports are streamed from the store in pages of this many rows (flat memory).
REPORT_PAGE_ROWS = 10_000
# Mapper transactions kept for txn/status, per participant (oldest forgotten first).
MAPPER_TXNS_KEPT_PER_PARTICIPANT_MAX = 10_000
# Text fields of a row.
REFERENCE_ID_LENGTH_MAX = core_limits.ID_LENGTH_MAX
FA_LENGTH_MAX = 256
TRANSACTION_ID_LENGTH_MAX = 99  # the spec's maxLength
NOTE_LENGTH_MAX = 99

assert MESSAGE_ROWS_MAX <= BATCH_ROWS_MAX
assert SUBMIT_CHUNK_MAX <= IN_FLIGHT_ROWS_MAX_DEFAULT <= IN_FLIGHT_ROWS_MAX_CEILING
# The window stays inside the core's in-flight table (defaults): see the comment above.
assert IN_FLIGHT_ROWS_MAX_CEILING <= core_limits.IN_FLIGHT_MAX_DEFAULT
assert STATUS_ROWS_MAX <= REPORT_PAGE_ROWS
assert FLUSH_ROWS_MAX >= SUBMIT_CHUNK_MAX
