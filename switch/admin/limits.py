"""Every bound of the operator API and console in one place, with the asserts that relate them.

Types in `switch/admin/types.py`, the login limiter, the session table and the audit reader
take their numbers from here; nothing else in `switch/admin` hard-codes a size or a duration.
"""

NS_PER_S = 1_000_000_000

# Operators. Usernames are short handles (they appear in every audit record); passwords are
# long enough for a passphrase and short enough that hashing one is never a denial of service.
USERNAME_LENGTH_MAX = 32
PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 256
USERS_MAX = 1_000

# argon2id cost: RFC 9106's second recommended option (t=3, 64 MiB), one lane. Measured
# ~140 ms per login on the shared 2-core development box, in a worker thread
# (switch/admin/passwords.py). Tests may lower it; never below this module's floor.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 1
ARGON2_MEMORY_KIB_FLOOR = 8 * 1024

# Password hashes in worker threads: two at a time, so one slow hash does not stall every
# other login (the switch keeps a core for payments on the 2-core box), and a short line of
# logins waiting for a slot; past it a login is refused at once (LOGIN_BUSY).
PASSWORD_HASHES_CONCURRENT_MAX = 2
PASSWORD_HASHES_WAITING_MAX = 8

# Sessions: a token of 32 random bytes; idle and absolute lifetimes.
SESSION_TOKEN_BYTES = 32
CSRF_TOKEN_BYTES = 32
SESSION_IDLE_S = 30 * 60
SESSION_LIFETIME_S = 12 * 3600
SESSIONS_PER_USER_MAX = 8

# Login rate limiting: failures within a sliding window, per username and per client address.
# A whole office behind one NAT shares an address, hence its larger budget.
LOGIN_WINDOW_S = 15 * 60
LOGIN_FAILURES_PER_USER_MAX = 5
LOGIN_FAILURES_PER_ADDRESS_MAX = 20
LOGIN_LIMITER_KEYS_MAX = 100_000  # keys remembered; the oldest window is dropped past it

# Audit log: one record per operator action or login; read in pages.
AUDIT_PAGE_MAX = 500
AUDIT_DETAIL_BYTES_MAX = 4_096
AUDIT_VERIFY_BATCH = 1_000
# The audit head is anchored in the switch's journal (AuditAnchored) after every maker-checker
# execution and at most this often otherwise, when it moved: a truncation of the records
# newer than the last anchor is the most that can go unnoticed.
AUDIT_ANCHOR_INTERVAL_S = 60

# Maker-checker: proposals waiting on a checker, and how long one may wait.
PROPOSALS_OPEN_MAX = 1_000
PROPOSAL_TTL_S = 24 * 3600
PROPOSAL_NOTE_LENGTH_MAX = 140

# Transfer search and timelines.
SEARCH_RESULTS_MAX = 200
# A search without the payer and transfer id scans the core's retained transfers, newest
# first, in the switch's own loop: at ~0.5 us a record this bounds the pause to ~10 ms.
SEARCH_SCAN_MAX = 20_000
TIMELINE_TRANSFERS_MAX = 100_000  # transfers whose state trail the recorder keeps
TIMELINE_STEPS_MAX = 8  # received, reserved, forwarded, final (+ margin)

# Participants: callback URLs and API credentials.
API_KEY_BYTES = 32

# Live overview: one sample per second, a few minutes of history for the chart.
LIVE_SAMPLE_INTERVAL_S = 1
LIVE_HISTORY_SAMPLES_MAX = 300
SSE_CLIENTS_MAX = 64
ALERT_CAP_USED_FRACTION = 0.8  # a participant past this share of its limit raises an alert
JOURNAL_LAG_ALERT_S = 1.0

# The switch's answer to an operator event (journaled, then decided): past this the console
# says it does not know yet, and the event may still be decided.
SUBMIT_TIMEOUT_S = 10

# Requests.
FORM_BYTES_MAX = 16 * 1024
REQUEST_BODY_BYTES_MAX = 64 * 1024
# An RTGS answer (pacs.002) to a window's instructions: a status per instruction, one
# instruction per participant with a position.
RTGS_ANSWER_BYTES_MAX = 4 * 1024 * 1024

assert PASSWORD_LENGTH_MIN < PASSWORD_LENGTH_MAX
assert ARGON2_MEMORY_KIB >= ARGON2_MEMORY_KIB_FLOOR
assert SESSION_IDLE_S <= SESSION_LIFETIME_S
assert LOGIN_FAILURES_PER_USER_MAX <= LOGIN_FAILURES_PER_ADDRESS_MAX
assert PASSWORD_HASHES_CONCURRENT_MAX >= 2  # one slow hash must not hold up every login
assert PASSWORD_HASHES_WAITING_MAX >= 1
assert AUDIT_DETAIL_BYTES_MAX < REQUEST_BODY_BYTES_MAX
assert FORM_BYTES_MAX <= REQUEST_BODY_BYTES_MAX
assert SEARCH_RESULTS_MAX <= AUDIT_PAGE_MAX
assert SEARCH_RESULTS_MAX <= SEARCH_SCAN_MAX
assert 0 < ALERT_CAP_USED_FRACTION < 1
