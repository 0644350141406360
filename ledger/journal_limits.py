"""Every bound of the journal, snapshots and recovery in one place, with the asserts that
relate them.

They live beside `ledger/limits.py` (the state machine's bounds, owned with the core) rather
than inside it so the two can change without touching each other; both are "the ledger's
limits". Nothing here may depend on I/O or configuration read at run time.
"""

from ledger.limits import BATCH_EVENTS_MAX

# One journal record's payload. A full ledger batch is 8,189 x 72 B events plus its result
# trailer (8 B per failed event) and a 24 B prefix: ~655 KB. The switch's own event records
# are far smaller. A header claiming more than this is corruption, never a read size.
RECORD_PAYLOAD_BYTES_MAX = 4 * 1024 * 1024

# Group commit: what one commit() may carry. append() refuses (typed error, nothing changed)
# past either bound, so a stalled disk turns into back-pressure instead of unbounded memory.
# Records are handed to os.writev as two buffers each; IOV_MAX is 1,024 on Linux.
COMMIT_RECORDS_MAX_DEFAULT = 512
COMMIT_RECORDS_MAX_LIMIT = 512
COMMIT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
WRITEV_BUFFERS_MAX = 1024

# A journal's name in PostgreSQL: the tables' CHECK (switch/store/migrations/
# 0001_ledger_journal.sql) allows 64 characters, and 64 bytes are never more characters.
JOURNAL_NAME_BYTES_MAX = 64
# Every await on the database has a bound; a COPY of a full group commit
# (COMMIT_BYTES_MAX_DEFAULT at most) on a healthy server takes well under a second.
POSTGRES_CONNECT_TIMEOUT_S = 10.0
POSTGRES_STATEMENT_TIMEOUT_S = 60.0
# Rows fetched per round trip when PostgreSQL streams the journal back (verify / replay).
POSTGRES_FETCH_ROWS_MAX = 16
# A writer's session sets TCP keepalives on the server side, so that when its machine
# vanishes (no FIN ever comes) the server ends the session, and with it the writer's
# advisory lock, within idle + interval * count seconds: the bound on how long a standby
# waits to take over from a dead machine (docs/operations.md).
POSTGRES_KEEPALIVE_IDLE_S = 5
POSTGRES_KEEPALIVE_INTERVAL_S = 1
POSTGRES_KEEPALIVE_COUNT = 3
# A standby following a journal: how often it looks for new records and for the writer's
# lock when no notification woke it, how many rows one read brings, and how often it
# records its progress for the primary's operators.
FOLLOW_POLL_INTERVAL_S_DEFAULT = 0.1
FOLLOW_POLL_INTERVAL_S_MAX = 10.0
FOLLOW_FETCH_ROWS_MAX = 64
FOLLOW_PROGRESS_INTERVAL_S = 1.0
# Records per newest-first window when find_transfer searches the PostgreSQL journal.
POSTGRES_FIND_WINDOW_RECORDS_MAX = 256

# PostgreSQL journal partitions (switch/store/migrations/0022_journal_partitions.sql): the
# records (group-committed ticks) per partition, bounded as the settings table's CHECK
# bounds them; the default is a day or so of ticks at a steady load. The writer makes the
# next partition once the one it writes is half full, in a transaction of its own, and
# retries a failed attempt no sooner than PARTITION_UPKEEP_RETRY_S later.
JOURNAL_PARTITION_RECORDS_MIN = 16
JOURNAL_PARTITION_RECORDS_MAX = 1 << 40
JOURNAL_PARTITION_RECORDS_DEFAULT = 1_000_000
PARTITION_UPKEEP_RETRY_S = 5.0
# `ponte journal archive`: one segment file holds at most this many bytes of records
# (uncompressed; a partition's records of one journal are cut into several when larger), so
# reading one back — verify, restore — needs a bounded amount of memory.
ARCHIVE_SEGMENT_BYTES_MAX = 256 * 1024 * 1024
# A detach waits (without holding up commits) for every transaction that may still read the
# partition, such as a standby's first replay: bounded, but generously.
ARCHIVE_DETACH_TIMEOUT_S = 3600.0
# Renaming a partition before its detach waits this long for the partition's readers.
ARCHIVE_RENAME_LOCK_TIMEOUT_MS = 10_000

# Snapshots kept on disk; older ones are deleted after a new one is durable.
SNAPSHOTS_RETAINED_MAX = 3
# A snapshot is the whole ledger state: accounts_max (2**28) accounts x ~100 B is the
# theoretical ceiling; refuse to read anything claiming more.
SNAPSHOT_BYTES_MAX = 64 * 1024 * 1024 * 1024

# find_transfer walks headers forward from the nearest known record start; one checkpoint is
# remembered per this many bytes of journal, so the walk and the index both stay bounded.
FIND_CHECKPOINT_BYTES = 4 * 1024 * 1024

assert RECORD_PAYLOAD_BYTES_MAX >= BATCH_EVENTS_MAX * (72 + 8) + 64
assert 2 * COMMIT_RECORDS_MAX_LIMIT <= WRITEV_BUFFERS_MAX
assert 1 <= COMMIT_RECORDS_MAX_DEFAULT <= COMMIT_RECORDS_MAX_LIMIT
assert COMMIT_BYTES_MAX_DEFAULT >= RECORD_PAYLOAD_BYTES_MAX + 96
assert SNAPSHOTS_RETAINED_MAX >= 2  # keep a fallback if the newest one is damaged
assert POSTGRES_FETCH_ROWS_MAX >= 1
assert (JOURNAL_PARTITION_RECORDS_MIN <= JOURNAL_PARTITION_RECORDS_DEFAULT
        <= JOURNAL_PARTITION_RECORDS_MAX)
assert JOURNAL_PARTITION_RECORDS_MIN // 2 >= 1  # the upkeep's headroom is half a partition
assert ARCHIVE_SEGMENT_BYTES_MAX >= RECORD_PAYLOAD_BYTES_MAX + 96  # one record always fits
assert 0 < FOLLOW_POLL_INTERVAL_S_DEFAULT <= FOLLOW_POLL_INTERVAL_S_MAX
assert FOLLOW_FETCH_ROWS_MAX >= 1
assert POSTGRES_FIND_WINDOW_RECORDS_MAX >= 1
assert 0 < POSTGRES_CONNECT_TIMEOUT_S <= POSTGRES_STATEMENT_TIMEOUT_S
