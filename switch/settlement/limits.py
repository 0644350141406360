"""Every bound of the settlement package in one place, with the asserts that relate them.

Nothing else in `switch/settlement` hard-codes a size or a duration.
"""

# The entry log (entries.py): each open window's entries are buffered and written when the
# buffer passes this, at every window change and before a statement is read.
ENTRY_BUFFER_BYTES_MAX = 1 << 20
# Statements are produced by streaming: the entry log is read in chunks of this size and
# the document leaves in chunks of about this size, whatever the window's size.
ENTRY_READ_CHUNK_BYTES = 1 << 20
STATEMENT_CHUNK_BYTES = 1 << 16
# Chunks produced ahead of the reader (a slow client holds at most this many).
STATEMENT_CHUNKS_AHEAD_MAX = 8
# Statements produced at once (each holds a reader thread); more answer SERVER_BUSY.
STATEMENTS_CONCURRENT_MAX = 4
# How long a statement waits for the journal to make what it reports durable.
DURABLE_WAIT_S_MAX = 5.0
# A participant's reconciliation request: rows in one request, differences in one answer.
RECONCILIATION_ROWS_MAX = 100_000
RECONCILIATION_DIFFERENCES_MAX = 10_000
RECONCILIATION_BODY_BYTES_MAX = 16 * 1024 * 1024
# An RTGS answer (pacs.002) posted to the admin API (its HTTP bound is the admin's
# RTGS_ANSWER_BYTES_MAX, the same number).
RTGS_DOCUMENT_BYTES_MAX = 4 * 1024 * 1024
# ISO 20022 amounts: at most 18 digits in all (ActiveCurrencyAndAmount).
ISO_AMOUNT_DIGITS_MAX = 18
# Windows listed in one answer.
WINDOWS_LISTED_MAX = 500

assert STATEMENT_CHUNK_BYTES <= ENTRY_READ_CHUNK_BYTES
assert STATEMENTS_CONCURRENT_MAX >= 1
assert RECONCILIATION_DIFFERENCES_MAX <= RECONCILIATION_ROWS_MAX
