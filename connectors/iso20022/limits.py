"""Every bound of the ISO 20022 connector in one place, with the asserts that relate them.

The parser (`xml.py`), the mapping (`inbound.py`, `outbound.py`), the transport
(`transport.py`), the connector (`connector.py`) and its store (`state.py`) take their
sizes and durations from here.
"""

from connectors.http import limits as http_limits
from switch.core import limits as core_limits

# -- what a bank may send ----------------------------------------------------------------
# One pacs.008 with every optional group the mapping reads is about 4 KiB; a camt.054 of
# one entry about 3 KiB. A batch carries at most BATCH_MESSAGES_MAX of them.
MESSAGE_BYTES_MAX = 64 * 1024
BATCH_MESSAGES_MAX = 100
REQUEST_BODY_BYTES_MAX = 2 * 1024 * 1024
# Nesting: libxml2 refuses documents deeper than 256 levels without XML_PARSE_HUGE, which
# the parser never sets; the XSDs bound the depth of everything the mapping reads.
# Transactions in one pacs/camt/pain message: one (the instant-payment guidelines' rule).
TRANSACTIONS_PER_MESSAGE_MAX = 1

# -- scheme rules ------------------------------------------------------------------------
# A message's CreDtTm may be this far ahead of the switch's clock (clock skew), and this old
# (a bank's resend after an outage) before it is refused.
CREATED_AHEAD_MS_MAX = 5 * 60 * 1000
CREATED_AGE_MS_MAX = 24 * 3600 * 1000
# The settlement date (IntrBkSttlmDt) may differ from the switch's UTC date by one day
# (banks in time zones ahead of or behind UTC).
SETTLEMENT_DATE_SKEW_DAYS_MAX = 1
# A pacs.008 carries no expiry: the transfer's expiry is its CreDtTm plus this (the
# configured value, bounded by the core's ceiling).
TRANSFER_EXPIRY_MS_DEFAULT = 60_000
REQUEST_TO_PAY_EXPIRY_MS_DEFAULT = 5 * 60 * 1000

# -- memory the connector keeps ----------------------------------------------------------
# BizMsgIdr seen per participant (exactly-once on the way in): a resend inside the window
# is answered like the first without reaching the switch again.
SEEN_MESSAGES_PER_PARTICIPANT_MAX = 65_536
# What an inbound pacs.008 carried that the core does not (debtor, remittance, UETR), kept
# until the transfer's outcome has gone out, so the payee bank's pacs.008 carries it too.
PASS_THROUGH_MAX = 1 << 17
# The forwarded groups of one pacs.008 (Dbtr, DbtrAcct, Cdtr, Purp, RmtInf) as written: a
# sample with every group is under 2 KiB, but RmtInf may repeat Ustrd and Strd without end
# within a 2 MiB body. Larger ones are refused (FF01).
PASS_THROUGH_BYTES_MAX = 16 * 1024
# Outbound references that could not carry the transfer id itself (ids longer than 35).
REFERENCES_MAX = 1 << 17
# Recalls (camt.056) forwarded and waiting for the payee bank's camt.029.
RECALLS_MAX = 1 << 14
# Member ids' XML (FinInstnId, an envelope's head) written once and kept, most used first.
MEMBER_TEXTS_MAX = 4096
# The connector's store (state.py): one record at most (a passthrough: its forwarded groups
# and references), the log's size below which it is never rewritten, and how long a
# passthrough or a credit's kind may wait for its transfer's outcome (any transfer is final
# by then: the core's longest expiry, and an hour for a payee's late answer).
STATE_RECORD_BYTES_MAX = 64 * 1024
STATE_COMPACT_BYTES_MIN = 64 * 1024 * 1024
STATE_KEPT_AGE_MS_MAX = core_limits.EXPIRY_MS_MAX_CEILING + 3600 * 1000
# The outbox (outbox.py): the log's size below which it is never rewritten. What is owed is
# small (a bank acknowledges within a round trip), so at a payment rate of thousands a
# second it is rewritten every few seconds, from frames it keeps: a copy, no encoding.
OUTBOX_COMPACT_BYTES_MIN = 64 * 1024 * 1024
# One owed message as recorded: the largest the switch writes is a camt.052 of
# REPORT_ENTRIES_MAX entries (about 400 bytes each: 3.9 MB).
OUTBOX_RECORD_BYTES_MAX = 32 * 1024 * 1024
# camt.052 entries waiting for the next intraday report, per participant.
REPORT_ENTRIES_MAX = 10_000

# -- delivery to banks -------------------------------------------------------------------
DELIVERY_QUEUE_PER_PARTICIPANT_MAX = 65_536
DELIVERY_ATTEMPTS_MAX = 8
DELIVERY_BACKOFF_MS_MIN = 50
DELIVERY_BACKOFF_MS_MAX = 10_000
DELIVERY_TIMEOUT_MS = 10_000
DELIVERY_BATCH_MAX_DEFAULT = 50
REPORT_INTERVAL_MS_DEFAULT = 60_000

assert MESSAGE_BYTES_MAX * 2 <= REQUEST_BODY_BYTES_MAX <= http_limits.REQUEST_BODY_BYTES_CEILING
assert 1 <= DELIVERY_BATCH_MAX_DEFAULT <= BATCH_MESSAGES_MAX
assert TRANSFER_EXPIRY_MS_DEFAULT <= core_limits.EXPIRY_MS_MAX_DEFAULT
assert REQUEST_TO_PAY_EXPIRY_MS_DEFAULT <= core_limits.EXPIRY_MS_MAX_DEFAULT
assert DELIVERY_BACKOFF_MS_MIN <= DELIVERY_BACKOFF_MS_MAX
assert DELIVERY_ATTEMPTS_MAX >= 1
assert BATCH_MESSAGES_MAX * 4096 <= REQUEST_BODY_BYTES_MAX
assert PASS_THROUGH_BYTES_MAX + 4096 <= STATE_RECORD_BYTES_MAX  # + references and header
assert STATE_RECORD_BYTES_MAX < STATE_COMPACT_BYTES_MIN
assert REPORT_ENTRIES_MAX * 2048 + MESSAGE_BYTES_MAX <= OUTBOX_RECORD_BYTES_MAX
assert OUTBOX_RECORD_BYTES_MAX < OUTBOX_COMPACT_BYTES_MIN
