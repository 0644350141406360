# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, overflowcheck=False
"""Compiled twin of the ledger: the same state machine as `ledger/reference.py`, in C.

It exists for speed: batches of packed records go in, a list of failures comes out, and
nothing in between creates a Python object per transfer (only failures become tuples).
State lives in C arrays and open-addressing hash tables allocated with PyMem_* and freed in
__dealloc__; every array grows up to its `LedgerConfig` bound before a batch starts, so the
hot loop never allocates and never touches the interpreter. It must never do I/O, read the
clock, raise for a business outcome, or differ from the reference twin in any result,
lookup or snapshot byte (tests/ledger compare them).

This file is the kernel only: state, batches, the single-transfer path, expiry, totals, and
the small record-level kernel API through which `ledger/common.py` — shared with the pure
twin — does lookups, history, snapshots and the invariant checks (`Ledger`, at the end).
Its constants come from `_constants.pxi`, generated from `ledger/types.py`.

Not thread-safe: one caller at a time (the switch's sequencer), like the reference.
"""

import sys

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

from ledger.common import LedgerCommon
from ledger.config import LedgerConfig
from ledger.formats import HISTORY_STRUCT, RETAINED_STRUCT
from ledger.gen_constants import constants_digest
from ledger.types import (
    TRANSFER_RESULTS_POISONING_ID,
    CreateAccountResult,
    CreateTransferResult,
)

# The shared constants: flags (A_*, T_*), result codes (AR_*, TR_*), pending statuses
# (STATUS_*), retained-slot kinds (KIND_*), known flag masks, RECORD_BYTES,
# BATCH_EVENTS_MAX, NS_PER_MS, generated from ledger/types.py by ledger/gen_constants.py.
include "_constants.pxi"

if sys.byteorder != "little":  # the packed formats are little-endian and cast in place
    raise ImportError("the compiled ledger needs a little-endian machine")

# Refuse to load a core built from other constants than ledger.types declares now, or with
# C structs of other sizes than ledger.formats (the package then falls back to the pure
# twin and test_compiled_is_loaded fails loudly).
if BUILT_CONSTANTS_DIGEST != constants_digest():
    raise ImportError("ledger._core was built from other ledger.types constants: rebuild it "
                      "(python setup.py build_ext --inplace)")
if (sizeof(TransferRecord) != RECORD_BYTES or sizeof(AccountRecord) != RECORD_BYTES
        or sizeof(Retained) != RETAINED_STRUCT.size
        or sizeof(HistoryRow) != HISTORY_STRUCT.size):
    raise ImportError("ledger._core's C structs do not match ledger.formats")

cdef extern from *:
    """
    #define PONTE_U64_MAX UINT64_MAX
    #define PONTE_NO_INDEX UINT64_MAX
    #define PONTE_GOLDEN 0x9E3779B97F4A7C15ULL
    #define PONTE_NO_HEAP_POSITION UINT32_MAX
    """
    # Constants above 2**31 must be C literals (a cdef enum member is a C int).
    const uint64_t U64_MAX "PONTE_U64_MAX"
    const uint64_t NO_INDEX "PONTE_NO_INDEX"
    const uint64_t GOLDEN "PONTE_GOLDEN"
    const uint32_t NO_HEAP_POSITION "PONTE_NO_HEAP_POSITION"

# The kernel's own constants (nothing outside this file knows them).
cdef enum:
    TABLE_CAPACITY_MIN = 16
    UNDO_PER_EVENT_MAX = 8  # 2 accounts, ring push, pool op, status, 2 history rows

cdef enum:  # UndoEntry.kind
    UNDO_ACCOUNT = 1
    UNDO_ACCOUNT_CREATED = 2
    UNDO_RING_PUSH = 3
    UNDO_STATUS = 4
    UNDO_POOL_ADD = 5
    UNDO_POOL_REMOVE = 6
    UNDO_HISTORY_PUSH = 7

_TRANSFER_RESULTS = tuple(CreateTransferResult)
_ACCOUNT_RESULTS = tuple(CreateAccountResult)
assert all(member.value == index for index, member in enumerate(_TRANSFER_RESULTS))
assert all(member.value == index for index, member in enumerate(_ACCOUNT_RESULTS))

cdef uint8_t POISONS[TR_COUNT]
memset(POISONS, 0, sizeof(POISONS))
for _result in TRANSFER_RESULTS_POISONING_ID:
    POISONS[<int>_result] = 1


# ------------------------------------------------------------------------------ id tables

cdef inline uint64_t table_home(const IdTable* table, uint64_t id) noexcept nogil:
    return (id * GOLDEN) >> table.shift


cdef inline uint64_t table_find(const IdTable* table, uint64_t id) noexcept nogil:
    """The index stored for `id`, or NO_INDEX."""
    cdef uint64_t i = table_home(table, id)
    cdef uint64_t found
    while True:
        found = table.slots[i].id
        if found == id:
            return table.slots[i].index
        if found == 0:
            return NO_INDEX
        i = (i + 1) & table.mask


cdef inline void table_insert(IdTable* table, uint64_t id, uint64_t index) noexcept nogil:
    """Insert an id known to be absent; capacity was reserved before the batch."""
    cdef uint64_t i = table_home(table, id)
    while table.slots[i].id != 0:
        i = (i + 1) & table.mask
    table.slots[i].id = id
    table.slots[i].index = index
    table.count += 1


cdef void table_remove(IdTable* table, uint64_t id) noexcept nogil:
    """Remove a present id, shifting later entries of its probe run back (no tombstones,
    so lookups stay short however many ids the ring evicts)."""
    cdef uint64_t i = table_home(table, id)
    cdef uint64_t j, home
    cdef bint stays
    while table.slots[i].id != id:
        i = (i + 1) & table.mask
    j = i
    while True:
        j = (j + 1) & table.mask
        if table.slots[j].id == 0:
            break
        home = table_home(table, table.slots[j].id)
        if i <= j:
            stays = i < home and home <= j
        else:
            stays = i < home or home <= j
        if not stays:
            table.slots[i] = table.slots[j]
            i = j
    table.slots[i].id = 0
    table.slots[i].index = 0
    table.count -= 1


cdef int table_reserve(IdTable* table, uint64_t needed) except -1:
    """Grow so that `needed` ids keep the load factor at or under 1/2."""
    cdef uint64_t capacity = TABLE_CAPACITY_MIN
    cdef uint32_t bits = 4
    cdef IdSlot* old_slots = table.slots
    cdef uint64_t old_capacity = table.mask + 1 if old_slots != NULL else 0
    cdef uint64_t i
    if old_slots != NULL and needed * 2 <= old_capacity:
        return 0
    while capacity < needed * 2:
        capacity <<= 1
        bits += 1
    cdef IdSlot* slots = <IdSlot*>PyMem_Calloc(capacity, sizeof(IdSlot))
    if slots == NULL:
        raise MemoryError()
    table.slots = slots
    table.mask = capacity - 1
    table.shift = 64 - bits
    table.count = 0
    for i in range(old_capacity):
        if old_slots[i].id != 0:
            table_insert(table, old_slots[i].id, old_slots[i].index)
    PyMem_Free(old_slots)
    return 0


cdef void table_free(IdTable* table) noexcept:
    PyMem_Free(table.slots)
    table.slots = NULL


cdef int grow_array(void** array, uint64_t* capacity, uint64_t needed, uint64_t maximum,
                    size_t item_size) except -1:
    """Grow `*array` (contents kept) to hold `needed` items: at least double, at most
    `maximum`, so repeated small batches stay amortised O(1)."""
    if needed <= capacity[0]:
        return 0
    cdef uint64_t new_capacity = capacity[0] * 2
    if new_capacity < needed:
        new_capacity = needed
    if new_capacity < 16:
        new_capacity = 16
    if new_capacity > maximum:
        new_capacity = maximum
    if new_capacity < needed:
        raise AssertionError("growing past a configured bound")
    cdef void* grown = PyMem_Realloc(array[0], new_capacity * item_size)
    if grown == NULL:
        raise MemoryError()
    array[0] = grown
    capacity[0] = new_capacity
    return 0


# ------------------------------------------------------------------------------ undo log

cdef inline UndoEntry* undo_push(State* s, uint32_t kind) noexcept nogil:
    cdef UndoEntry* entry = &s.undo[s.undo_count]
    s.undo_count += 1
    entry.kind = kind
    return entry


cdef inline void save_account(State* s, uint64_t index) noexcept nogil:
    cdef UndoEntry* entry
    cdef AccountRecord* account
    if s.undo_active:
        account = &s.accounts[index]
        entry = undo_push(s, UNDO_ACCOUNT)
        entry.index = index
        entry.balances[0] = account.debits_pending
        entry.balances[1] = account.debits_posted
        entry.balances[2] = account.credits_pending
        entry.balances[3] = account.credits_posted
        entry.flags = account.flags


# ------------------------------------------------------------------------------ ring, pool, heap, history

cdef void ring_push(State* s, const Retained* retained) noexcept nogil:
    cdef uint64_t head = s.ring_head
    cdef UndoEntry* entry = NULL
    cdef bint full = s.ring_count == s.ring_max
    if s.undo_active:
        entry = undo_push(s, UNDO_RING_PUSH)
        entry.occupied = full
        if full:
            entry.saved.retained = s.ring[head]
    if full:
        table_remove(&s.ring_table, s.ring[head].record.id)
    else:
        s.ring_count += 1
    s.ring[head] = retained[0]
    table_insert(&s.ring_table, retained.record.id, head)
    head += 1
    s.ring_head = 0 if head == s.ring_max else head


cdef void ring_pop(State* s, const UndoEntry* entry) noexcept nogil:
    cdef uint64_t head = (s.ring_head if s.ring_head != 0 else s.ring_max) - 1
    table_remove(&s.ring_table, s.ring[head].record.id)
    if entry.occupied:
        s.ring[head] = entry.saved.retained
        table_insert(&s.ring_table, s.ring[head].record.id, head)
    else:
        s.ring_count -= 1
        memset(&s.ring[head], 0, sizeof(Retained))
    s.ring_head = head


cdef inline bint heap_less(const HeapEntry* a, const HeapEntry* b) noexcept nogil:
    if a.deadline_ns != b.deadline_ns:
        return a.deadline_ns < b.deadline_ns
    return a.timestamp < b.timestamp


cdef inline void heap_place(State* s, uint64_t position, const HeapEntry* item) noexcept nogil:
    s.heap[position] = item[0]
    s.pool[item.pool_index].heap_position = <uint32_t>position


cdef void heap_sift_up(State* s, uint64_t position) noexcept nogil:
    cdef HeapEntry item = s.heap[position]
    cdef uint64_t parent
    while position > 0:
        parent = (position - 1) >> 1
        if not heap_less(&item, &s.heap[parent]):
            break
        heap_place(s, position, &s.heap[parent])
        position = parent
    heap_place(s, position, &item)


cdef void heap_sift_down(State* s, uint64_t position) noexcept nogil:
    cdef HeapEntry item = s.heap[position]
    cdef uint64_t child
    while True:
        child = 2 * position + 1
        if child >= s.heap_count:
            break
        if child + 1 < s.heap_count and heap_less(&s.heap[child + 1], &s.heap[child]):
            child += 1
        if not heap_less(&s.heap[child], &item):
            break
        heap_place(s, position, &s.heap[child])
        position = child
    heap_place(s, position, &item)


cdef void heap_remove_at(State* s, uint64_t position) noexcept nogil:
    cdef uint64_t last
    s.heap_count -= 1
    last = s.heap_count
    if position == last:
        return
    heap_place(s, position, &s.heap[last])
    if position > 0 and heap_less(&s.heap[position], &s.heap[(position - 1) >> 1]):
        heap_sift_up(s, position)
    else:
        heap_sift_down(s, position)


cdef uint64_t pool_add_entry(State* s, const PendingEntry* source) noexcept nogil:
    """Put a pending transfer in the pool (and the heap if it can expire). Free slots are
    chained through their deadline_ns field."""
    cdef uint64_t index
    cdef PendingEntry* slot
    cdef HeapEntry item
    if s.pool_free != NO_INDEX:
        index = s.pool_free
        s.pool_free = s.pool[index].deadline_ns
    else:
        index = s.pool_used
        s.pool_used += 1
    slot = &s.pool[index]
    slot[0] = source[0]
    slot.heap_position = NO_HEAP_POSITION
    slot.padding = 0
    s.pool_count += 1
    table_insert(&s.pool_table, slot.retained.record.id, index)
    if slot.retained.record.timeout_ms != 0:
        item.deadline_ns = slot.deadline_ns
        item.timestamp = slot.retained.record.timestamp
        item.pool_index = index
        s.heap[s.heap_count] = item
        s.heap_count += 1
        heap_sift_up(s, s.heap_count - 1)
    return index


cdef void pool_remove_entry(State* s, uint64_t index) noexcept nogil:
    cdef PendingEntry* slot = &s.pool[index]
    if slot.heap_position != NO_HEAP_POSITION:
        heap_remove_at(s, slot.heap_position)
    table_remove(&s.pool_table, slot.retained.record.id)
    memset(slot, 0, sizeof(PendingEntry))
    slot.deadline_ns = s.pool_free
    s.pool_free = index
    s.pool_count -= 1


cdef void history_push(State* s, const AccountRecord* account,
                       uint64_t timestamp) noexcept nogil:
    cdef uint64_t head = s.history_head
    cdef UndoEntry* entry
    cdef HistoryRow* row = &s.history[head]
    cdef bint full = s.history_count == s.history_max
    if s.undo_active:
        entry = undo_push(s, UNDO_HISTORY_PUSH)
        entry.occupied = full
        if full:
            entry.row = row[0]
    if not full:
        s.history_count += 1
    row.account_id = account.id
    row.timestamp = timestamp
    row.debits_pending = account.debits_pending
    row.debits_posted = account.debits_posted
    row.credits_pending = account.credits_pending
    row.credits_posted = account.credits_posted
    head += 1
    s.history_head = 0 if head == s.history_max else head


cdef inline void history_rows(State* s, uint64_t debit_index, uint64_t credit_index,
                              uint64_t timestamp) noexcept nogil:
    if s.accounts[debit_index].flags & A_HISTORY:
        history_push(s, &s.accounts[debit_index], timestamp)
    if s.accounts[credit_index].flags & A_HISTORY:
        history_push(s, &s.accounts[credit_index], timestamp)


cdef void rollback(State* s) noexcept nogil:
    """Undo everything the open chain did, newest first, and close the undo log."""
    cdef UndoEntry* entry
    cdef AccountRecord* account
    cdef uint64_t index, head
    s.undo_active = False
    while s.undo_count > 0:
        s.undo_count -= 1
        entry = &s.undo[s.undo_count]
        if entry.kind == UNDO_ACCOUNT:
            account = &s.accounts[entry.index]
            account.debits_pending = entry.balances[0]
            account.debits_posted = entry.balances[1]
            account.credits_pending = entry.balances[2]
            account.credits_posted = entry.balances[3]
            account.flags = entry.flags
        elif entry.kind == UNDO_ACCOUNT_CREATED:
            s.account_count -= 1
            table_remove(&s.account_table, s.accounts[s.account_count].id)
            memset(&s.accounts[s.account_count], 0, sizeof(AccountRecord))
        elif entry.kind == UNDO_RING_PUSH:
            ring_pop(s, entry)
        elif entry.kind == UNDO_STATUS:
            s.ring[entry.index].status = <uint8_t>entry.flags
        elif entry.kind == UNDO_POOL_ADD:
            # By id, not slot: a re-added entry may have landed in another slot.
            pool_remove_entry(s, table_find(&s.pool_table, entry.index))
        elif entry.kind == UNDO_POOL_REMOVE:
            pool_add_entry(s, &entry.saved)
        elif entry.kind == UNDO_HISTORY_PUSH:
            head = (s.history_head if s.history_head != 0 else s.history_max) - 1
            if entry.occupied:
                s.history[head] = entry.row
            else:
                memset(&s.history[head], 0, sizeof(HistoryRow))
                s.history_count -= 1
            s.history_head = head


# ------------------------------------------------------------------------------ accounts

cdef uint8_t create_account(State* s, const AccountRecord* a, uint64_t timestamp) noexcept nogil:
    cdef uint64_t index
    cdef AccountRecord* existing
    if a.timestamp != 0:
        return AR_TIMESTAMP_MUST_BE_ZERO
    if a.reserved != 0:
        return AR_RESERVED_FIELD
    if a.flags & ~ACCOUNT_FLAGS_KNOWN:
        return AR_RESERVED_FLAG
    if a.id == 0:
        return AR_ID_MUST_NOT_BE_ZERO
    if a.id == U64_MAX:
        return AR_ID_MUST_NOT_BE_INT_MAX
    index = table_find(&s.account_table, a.id)
    if index != NO_INDEX:
        existing = &s.accounts[index]
        # CLOSED is not compared: closing transfers change it after creation.
        if (existing.flags ^ a.flags) & ~A_CLOSED:
            return AR_EXISTS_WITH_DIFFERENT_FLAGS
        if existing.user_data_64 != a.user_data_64:
            return AR_EXISTS_WITH_DIFFERENT_USER_DATA_64
        if existing.user_data_32 != a.user_data_32:
            return AR_EXISTS_WITH_DIFFERENT_USER_DATA_32
        if existing.ledger != a.ledger:
            return AR_EXISTS_WITH_DIFFERENT_LEDGER
        if existing.code != a.code:
            return AR_EXISTS_WITH_DIFFERENT_CODE
        return AR_EXISTS
    if (a.flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS
            and a.flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS):
        return AR_FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if a.debits_pending != 0:
        return AR_DEBITS_PENDING_MUST_BE_ZERO
    if a.debits_posted != 0:
        return AR_DEBITS_POSTED_MUST_BE_ZERO
    if a.credits_pending != 0:
        return AR_CREDITS_PENDING_MUST_BE_ZERO
    if a.credits_posted != 0:
        return AR_CREDITS_POSTED_MUST_BE_ZERO
    if a.ledger == 0:
        return AR_LEDGER_MUST_NOT_BE_ZERO
    if a.code == 0:
        return AR_CODE_MUST_NOT_BE_ZERO
    if s.account_count >= s.accounts_max:
        return AR_ACCOUNTS_FULL
    index = s.account_count
    s.accounts[index] = a[0]
    s.accounts[index].timestamp = timestamp
    s.account_count += 1
    table_insert(&s.account_table, a.id, index)
    if s.undo_active:
        undo_push(s, UNDO_ACCOUNT_CREATED)
    return AR_OK


# ------------------------------------------------------------------------------ transfers

cdef inline bint field_differs(uint64_t given, uint64_t stored,
                               bint zero_inherits) noexcept nogil:
    """Whether a resent field differs from the stored one. With `zero_inherits` (a
    post/void) a zero field takes the pending transfer's value, so zero matches."""
    return given != stored and not (zero_inherits and given == 0)


cdef uint8_t transfer_exists(const Retained* existing, const TransferRecord* t) noexcept nogil:
    cdef const TransferRecord* e = &existing.record
    cdef bint post_or_void = (t.flags & (T_POST_PENDING_TRANSFER | T_VOID_PENDING_TRANSFER)) != 0
    cdef uint64_t amount
    if e.flags != t.flags:
        return TR_EXISTS_WITH_DIFFERENT_FLAGS
    if field_differs(t.debit_account_id, e.debit_account_id, post_or_void):
        return TR_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if field_differs(t.credit_account_id, e.credit_account_id, post_or_void):
        return TR_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if post_or_void:
        # The record holds the posted amount; a post/void amount of 0 means the pending
        # amount, kept in amount_bound_minor.
        amount = t.amount_minor if t.amount_minor != 0 else existing.amount_bound_minor
        if amount != e.amount_minor:
            return TR_EXISTS_WITH_DIFFERENT_AMOUNT
    elif t.amount_minor != existing.amount_bound_minor:
        return TR_EXISTS_WITH_DIFFERENT_AMOUNT
    if t.pending_id != e.pending_id:
        return TR_EXISTS_WITH_DIFFERENT_PENDING_ID
    if t.user_data_64 != e.user_data_64:
        return TR_EXISTS_WITH_DIFFERENT_USER_DATA_64
    if t.user_data_32 != e.user_data_32:
        return TR_EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.timeout_ms != e.timeout_ms:
        return TR_EXISTS_WITH_DIFFERENT_TIMEOUT
    if field_differs(t.ledger, e.ledger, post_or_void):
        return TR_EXISTS_WITH_DIFFERENT_LEDGER
    if field_differs(t.code, e.code, post_or_void):
        return TR_EXISTS_WITH_DIFFERENT_CODE
    return TR_EXISTS


cdef uint8_t post_or_void(State* s, const TransferRecord* t, uint64_t timestamp) noexcept nogil:
    cdef uint64_t pool_index, ring_index, debit_index, credit_index
    cdef const Retained* found
    cdef AccountRecord* debit
    cdef AccountRecord* credit
    cdef UndoEntry* entry
    cdef Retained record
    cdef uint64_t pending_amount, posted_amount, deadline_ns
    cdef uint16_t pending_flags
    cdef bint post = (t.flags & T_POST_PENDING_TRANSFER) != 0
    if t.pending_id == 0:
        return TR_PENDING_ID_MUST_NOT_BE_ZERO
    if t.pending_id == U64_MAX:
        return TR_PENDING_ID_MUST_NOT_BE_INT_MAX
    if t.pending_id == t.id:
        return TR_PENDING_ID_MUST_BE_DIFFERENT
    pool_index = table_find(&s.pool_table, t.pending_id) if s.pool_count else NO_INDEX
    if pool_index != NO_INDEX:
        found = &s.pool[pool_index].retained
    else:
        ring_index = table_find(&s.ring_table, t.pending_id)
        if ring_index == NO_INDEX:
            return TR_PENDING_TRANSFER_NOT_FOUND
        found = &s.ring[ring_index]
        if found.kind == KIND_FAILED:
            return TR_PENDING_TRANSFER_NOT_FOUND
    if not found.record.flags & T_PENDING:
        return TR_PENDING_TRANSFER_NOT_PENDING
    if t.debit_account_id != 0 and t.debit_account_id != found.record.debit_account_id:
        return TR_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id != 0 and t.credit_account_id != found.record.credit_account_id:
        return TR_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if t.ledger != 0 and t.ledger != found.record.ledger:
        return TR_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
    if t.code != 0 and t.code != found.record.code:
        return TR_PENDING_TRANSFER_HAS_DIFFERENT_CODE
    pending_amount = found.record.amount_minor
    if post and t.amount_minor > pending_amount:
        return TR_EXCEEDS_PENDING_TRANSFER_AMOUNT
    if not post and t.amount_minor != 0 and t.amount_minor != pending_amount:
        return TR_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    if found.status == STATUS_POSTED:
        return TR_PENDING_TRANSFER_ALREADY_POSTED
    if found.status == STATUS_VOIDED:
        return TR_PENDING_TRANSFER_ALREADY_VOIDED
    if found.status == STATUS_EXPIRED:
        return TR_PENDING_TRANSFER_EXPIRED
    # An open pending transfer is always in the pool (status PENDING).
    if pool_index == NO_INDEX:
        return TR_PENDING_TRANSFER_NOT_FOUND  # unreachable unless the state is corrupt
    deadline_ns = s.pool[pool_index].deadline_ns
    if found.record.timeout_ms != 0 and deadline_ns <= timestamp:
        return TR_PENDING_TRANSFER_EXPIRED
    debit_index = table_find(&s.account_table, found.record.debit_account_id)
    credit_index = table_find(&s.account_table, found.record.credit_account_id)
    debit = &s.accounts[debit_index]
    credit = &s.accounts[credit_index]
    posted_amount = 0
    if post:
        posted_amount = t.amount_minor if t.amount_minor != 0 else pending_amount
    # Cannot trigger while debits_pending + debits_posted <= 2**64-1 holds (the posted
    # amount comes out of debits_pending); kept to mirror the reference's check order.
    if posted_amount > U64_MAX - debit.debits_posted:
        return TR_OVERFLOWS_DEBITS_POSTED
    if posted_amount > U64_MAX - credit.credits_posted:
        return TR_OVERFLOWS_CREDITS_POSTED
    # Apply. Build the record first: `found` points into the pool slot removed below.
    memset(&record, 0, sizeof(Retained))
    record.record.id = t.id
    record.record.debit_account_id = found.record.debit_account_id
    record.record.credit_account_id = found.record.credit_account_id
    record.record.amount_minor = posted_amount if post else pending_amount
    record.record.pending_id = t.pending_id
    record.record.user_data_64 = t.user_data_64
    record.record.timestamp = timestamp
    record.record.user_data_32 = t.user_data_32
    record.record.ledger = found.record.ledger
    record.record.code = found.record.code
    record.record.flags = t.flags
    record.amount_bound_minor = pending_amount
    pending_flags = found.record.flags
    save_account(s, debit_index)
    save_account(s, credit_index)
    debit.debits_pending -= pending_amount
    credit.credits_pending -= pending_amount
    debit.debits_posted += posted_amount
    credit.credits_posted += posted_amount
    if not post:
        if pending_flags & T_CLOSING_DEBIT:
            debit.flags &= ~A_CLOSED
        if pending_flags & T_CLOSING_CREDIT:
            credit.flags &= ~A_CLOSED
    ring_index = table_find(&s.ring_table, t.pending_id)
    if ring_index != NO_INDEX:
        if s.undo_active:
            entry = undo_push(s, UNDO_STATUS)
            entry.index = ring_index
            entry.flags = s.ring[ring_index].status
        s.ring[ring_index].status = STATUS_POSTED if post else STATUS_VOIDED
    if s.undo_active:
        entry = undo_push(s, UNDO_POOL_REMOVE)
        entry.saved = s.pool[pool_index]
    pool_remove_entry(s, pool_index)
    ring_push(s, &record)
    history_rows(s, debit_index, credit_index, timestamp)
    return TR_OK


cdef uint8_t single_or_pending(State* s, const TransferRecord* t, uint64_t timestamp) noexcept nogil:
    cdef uint16_t flags = t.flags
    cdef bint is_pending = (flags & T_PENDING) != 0
    cdef uint64_t debit_index, credit_index, amount, room, debit_total, credit_total
    cdef AccountRecord* debit
    cdef AccountRecord* credit
    cdef Retained record
    cdef PendingEntry pending
    cdef UndoEntry* entry
    if t.debit_account_id == 0:
        return TR_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.debit_account_id == U64_MAX:
        return TR_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if t.credit_account_id == 0:
        return TR_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.credit_account_id == U64_MAX:
        return TR_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if t.debit_account_id == t.credit_account_id:
        return TR_ACCOUNTS_MUST_BE_DIFFERENT
    if t.pending_id != 0:
        return TR_PENDING_ID_MUST_BE_ZERO
    if t.amount_minor == 0 and not flags & (T_BALANCING_DEBIT | T_BALANCING_CREDIT):
        return TR_AMOUNT_MUST_NOT_BE_ZERO
    if t.ledger == 0:
        return TR_LEDGER_MUST_NOT_BE_ZERO
    if t.code == 0:
        return TR_CODE_MUST_NOT_BE_ZERO
    if flags & (T_CLOSING_DEBIT | T_CLOSING_CREDIT) and not is_pending:
        return TR_CLOSING_TRANSFER_MUST_BE_PENDING
    debit_index = table_find(&s.account_table, t.debit_account_id)
    if debit_index == NO_INDEX:
        return TR_DEBIT_ACCOUNT_NOT_FOUND
    credit_index = table_find(&s.account_table, t.credit_account_id)
    if credit_index == NO_INDEX:
        return TR_CREDIT_ACCOUNT_NOT_FOUND
    debit = &s.accounts[debit_index]
    credit = &s.accounts[credit_index]
    if debit.ledger != credit.ledger:
        return TR_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
    if t.ledger != debit.ledger:
        return TR_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
    if debit.flags & A_CLOSED:
        return TR_DEBIT_ACCOUNT_ALREADY_CLOSED
    if credit.flags & A_CLOSED:
        return TR_CREDIT_ACCOUNT_ALREADY_CLOSED
    # timeout_ms < 2**32, so timeout_ms * 1e6 < 2**52 never overflows by itself.
    if is_pending and <uint64_t>t.timeout_ms * NS_PER_MS > U64_MAX - timestamp:
        return TR_OVERFLOWS_TIMEOUT
    amount = t.amount_minor
    if flags & (T_BALANCING_DEBIT | T_BALANCING_CREDIT):
        # The input amount is an upper bound (0: none); take what the account(s) can still
        # bear, saturating at 0.
        if amount == 0:
            amount = U64_MAX
        if flags & T_BALANCING_DEBIT:
            room = saturating_room(debit.credits_posted, debit.debits_posted,
                                   debit.debits_pending)
            if room < amount:
                amount = room
        if flags & T_BALANCING_CREDIT:
            room = saturating_room(credit.debits_posted, credit.credits_posted,
                                   credit.credits_pending)
            if room < amount:
                amount = room
    if is_pending:
        if amount > U64_MAX - debit.debits_pending:
            return TR_OVERFLOWS_DEBITS_PENDING
        if amount > U64_MAX - credit.credits_pending:
            return TR_OVERFLOWS_CREDITS_PENDING
    else:
        if amount > U64_MAX - debit.debits_posted:
            return TR_OVERFLOWS_DEBITS_POSTED
        if amount > U64_MAX - credit.credits_posted:
            return TR_OVERFLOWS_CREDITS_POSTED
    # pending + posted never exceeds 2**64-1 (this check keeps it so), so the sums are safe.
    debit_total = debit.debits_pending + debit.debits_posted
    credit_total = credit.credits_pending + credit.credits_posted
    if amount > U64_MAX - debit_total:
        return TR_OVERFLOWS_DEBITS
    if amount > U64_MAX - credit_total:
        return TR_OVERFLOWS_CREDITS
    if debit.flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS and debit_total + amount > debit.credits_posted:
        return TR_EXCEEDS_CREDITS
    if credit.flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS and credit_total + amount > credit.debits_posted:
        return TR_EXCEEDS_DEBITS
    if is_pending and s.pool_count >= s.pool_max:
        return TR_PENDING_TRANSFERS_FULL
    # Apply.
    save_account(s, debit_index)
    save_account(s, credit_index)
    if is_pending:
        debit.debits_pending += amount
        credit.credits_pending += amount
        if flags & T_CLOSING_DEBIT:
            debit.flags |= A_CLOSED
        if flags & T_CLOSING_CREDIT:
            credit.flags |= A_CLOSED
    else:
        debit.debits_posted += amount
        credit.credits_posted += amount
    record.record = t[0]
    record.record.amount_minor = amount
    record.record.timestamp = timestamp
    record.amount_bound_minor = t.amount_minor
    record.kind = KIND_TRANSFER
    record.status = STATUS_PENDING if is_pending else STATUS_NONE
    record.failed_result = 0
    memset(record.padding, 0, 5)
    ring_push(s, &record)
    if is_pending:
        pending.retained = record
        pending.deadline_ns = timestamp + <uint64_t>t.timeout_ms * NS_PER_MS
        pool_add_entry(s, &pending)
        if s.undo_active:
            entry = undo_push(s, UNDO_POOL_ADD)
            entry.index = t.id
    history_rows(s, debit_index, credit_index, timestamp)
    return TR_OK


cdef inline uint64_t saturating_room(uint64_t limit, uint64_t used_a, uint64_t used_b) noexcept nogil:
    """max(limit - used_a - used_b, 0) without wrapping."""
    if used_a >= limit:
        return 0
    limit -= used_a
    if used_b >= limit:
        return 0
    return limit - used_b


cdef uint8_t create_transfer_event(State* s, const TransferRecord* t,
                                   uint64_t timestamp) noexcept nogil:
    cdef uint16_t flags = t.flags
    cdef uint16_t phase
    cdef uint64_t index
    cdef const Retained* existing
    if t.timestamp != 0:
        return TR_TIMESTAMP_MUST_BE_ZERO
    if flags & ~TRANSFER_FLAGS_KNOWN:
        return TR_RESERVED_FLAG
    if t.id == 0:
        return TR_ID_MUST_NOT_BE_ZERO
    if t.id == U64_MAX:
        return TR_ID_MUST_NOT_BE_INT_MAX
    index = table_find(&s.ring_table, t.id)
    if index != NO_INDEX:
        existing = &s.ring[index]
        if existing.kind == KIND_FAILED:
            return TR_ID_ALREADY_FAILED
        return transfer_exists(existing, t)
    if s.pool_count:
        index = table_find(&s.pool_table, t.id)
        if index != NO_INDEX:
            return transfer_exists(&s.pool[index].retained, t)
    phase = flags & (T_PENDING | T_POST_PENDING_TRANSFER | T_VOID_PENDING_TRANSFER)
    if phase & (phase - 1):
        return TR_FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & (T_POST_PENDING_TRANSFER | T_VOID_PENDING_TRANSFER) and flags & (T_BALANCING_DEBIT | T_BALANCING_CREDIT
                                              | T_CLOSING_DEBIT | T_CLOSING_CREDIT):
        return TR_FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if t.timeout_ms != 0 and not flags & T_PENDING:
        return TR_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if flags & (T_POST_PENDING_TRANSFER | T_VOID_PENDING_TRANSFER):
        return post_or_void(s, t, timestamp)
    return single_or_pending(s, t, timestamp)


cdef void remember_failed(State* s, uint64_t id, uint8_t result) noexcept nogil:
    """An id whose attempt failed for a reason that depends on ledger state."""
    cdef Retained record
    if table_find(&s.ring_table, id) != NO_INDEX:
        return  # only after a rollback that brought back a transfer the chain had evicted
    if s.pool_count and table_find(&s.pool_table, id) != NO_INDEX:
        return
    memset(&record, 0, sizeof(Retained))
    record.record.id = id
    record.kind = KIND_FAILED
    record.failed_result = result
    ring_push(s, &record)


# run_chain serves both kinds with one set of codes and one flag bit: keep them equal.
assert <int>AR_OK == <int>TR_OK
assert <int>AR_LINKED_EVENT_FAILED == <int>TR_LINKED_EVENT_FAILED
assert <int>AR_LINKED_EVENT_CHAIN_OPEN == <int>TR_LINKED_EVENT_CHAIN_OPEN
assert <int>A_LINKED == <int>T_LINKED


cdef inline void run_chain(State* s, const void* records, uint64_t count, uint64_t base,
                           bint transfers) noexcept nogil:
    """The hot loop: TigerBeetle's chain rules, the same for accounts and transfers,
    around one event's create function. Inlined into its two callers with `transfers`
    a constant, so the C compiler drops the other kind's branches from each loop."""
    cdef const TransferRecord* transfer_records = <const TransferRecord*>records
    cdef const AccountRecord* account_records = <const AccountRecord*>records
    cdef uint64_t index, j
    cdef int64_t chain_start = -1
    cdef bint chain_broken = False
    cdef bint linked
    cdef uint8_t result
    cdef uint8_t* codes = s.codes
    for index in range(count):
        if transfers:
            linked = transfer_records[index].flags & T_LINKED
        else:
            linked = account_records[index].flags & A_LINKED
        if linked and chain_start < 0:
            chain_start = <int64_t>index
            s.undo_active = True
            s.undo_count = 0
        if linked and index == count - 1:
            result = TR_LINKED_EVENT_CHAIN_OPEN
        elif chain_broken:
            result = TR_LINKED_EVENT_FAILED
        elif transfers:
            result = create_transfer_event(s, &transfer_records[index], base + index)
        else:
            result = create_account(s, &account_records[index], base + index)
        codes[index] = result
        if result != TR_OK:
            if chain_start >= 0 and not chain_broken:
                chain_broken = True
                rollback(s)
                for j in range(<uint64_t>chain_start, index):
                    codes[j] = TR_LINKED_EVENT_FAILED
            # Accounts keep no record of failed ids; transfers do (see remember_failed).
            if transfers and POISONS[result]:
                remember_failed(s, transfer_records[index].id, result)
        if chain_start >= 0 and (not linked or result == TR_LINKED_EVENT_CHAIN_OPEN):
            chain_start = -1
            chain_broken = False
            s.undo_active = False
            s.undo_count = 0


cdef void run_transfers(State* s, const TransferRecord* records, uint64_t count,
                        uint64_t base) noexcept nogil:
    run_chain(s, records, count, base, True)


cdef void run_accounts(State* s, const AccountRecord* records, uint64_t count,
                       uint64_t base) noexcept nogil:
    run_chain(s, records, count, base, False)


cdef extern from *:
    """
    typedef struct { uint64_t timestamp; uint64_t index; } ponte_order_key;
    static int ponte_order_key_compare(const void* a, const void* b) {
        uint64_t x = ((const ponte_order_key*)a)->timestamp;
        uint64_t y = ((const ponte_order_key*)b)->timestamp;
        return (x > y) - (x < y);
    }
    """
    ctypedef struct ponte_order_key:
        uint64_t timestamp
        uint64_t index
    int ponte_order_key_compare(const void* a, const void* b) noexcept nogil


cdef object _u128(uint64_t high, uint64_t low):
    return (<object>high << 64) | <object>low


cdef inline void _add_u128(uint64_t* high, uint64_t* low, uint64_t value) noexcept nogil:
    low[0] += value
    if low[0] < value:
        high[0] += 1


def _check_u64(value, name):
    if not isinstance(value, int) or value < 0 or value > U64_MAX:
        raise ValueError(f"{name} must be an int in [0, 2**64-1], got {value!r}")


cdef class Kernel:
    """The compiled ledger's kernel: state in C, and every operation that changes it."""

    implementation = "compiled"

    def __cinit__(self, config=None):
        if config is None:
            config = LedgerConfig()
        if not isinstance(config, LedgerConfig):
            raise TypeError("config must be a LedgerConfig")
        self.config = config
        self.debug_checks = config.debug_checks
        memset(&self.state, 0, sizeof(State))
        cdef State* s = &self.state
        s.accounts_max = config.accounts_max
        s.ring_max = config.transfers_retained_max
        s.pool_max = config.pending_max
        s.history_max = config.history_retained_max
        s.pool_free = NO_INDEX
        table_reserve(&s.account_table, 0)
        table_reserve(&s.ring_table, 0)
        table_reserve(&s.pool_table, 0)
        s.codes = <uint8_t*>PyMem_Malloc(BATCH_EVENTS_MAX)
        if s.codes == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef State* s = &self.state
        PyMem_Free(s.accounts)
        PyMem_Free(s.ring)
        PyMem_Free(s.pool)
        PyMem_Free(s.heap)
        PyMem_Free(s.history)
        PyMem_Free(s.undo)
        PyMem_Free(s.codes)
        table_free(&s.account_table)
        table_free(&s.ring_table)
        table_free(&s.pool_table)

    # -------------------------------------------------------------------- properties

    @property
    def last_timestamp(self):
        return self.state.last_timestamp

    @property
    def account_count(self):
        return self.state.account_count

    @property
    def pending_count(self):
        return self.state.pool_count

    # -------------------------------------------------------------------- capacity

    cdef int _reserve_for_transfers(self, uint64_t count, bint any_linked) except -1:
        """Grow every structure so `count` more events cannot need memory mid-batch: each
        event adds at most one retained entry, one pending entry and two history rows."""
        cdef State* s = &self.state
        cdef uint64_t needed
        needed = min(s.ring_max, s.ring_count + count)
        grow_array(<void**>&s.ring, &s.ring_capacity, needed, s.ring_max, sizeof(Retained))
        table_reserve(&s.ring_table, needed)
        needed = min(s.pool_max, max(s.pool_used, s.pool_count + count))
        self._grow_pool(needed)
        table_reserve(&s.pool_table, min(s.pool_max, s.pool_count + count))
        needed = min(s.history_max, s.history_count + 2 * count)
        grow_array(<void**>&s.history, &s.history_capacity, needed, s.history_max,
                   sizeof(HistoryRow))
        self._reserve_undo(count, any_linked)
        return 0

    cdef int _grow_pool(self, uint64_t needed) except -1:
        """Pool and heap share one capacity; it is recorded only once both have grown, so
        a MemoryError half-way leaves the recorded capacity true."""
        cdef State* s = &self.state
        cdef uint64_t pool_capacity = s.pool_capacity
        cdef uint64_t heap_capacity = s.pool_capacity
        grow_array(<void**>&s.pool, &pool_capacity, needed, s.pool_max, sizeof(PendingEntry))
        grow_array(<void**>&s.heap, &heap_capacity, needed, s.pool_max, sizeof(HeapEntry))
        assert pool_capacity == heap_capacity
        s.pool_capacity = pool_capacity
        return 0

    cdef int _reserve_for_accounts(self, uint64_t count, bint any_linked) except -1:
        cdef State* s = &self.state
        cdef uint64_t needed = min(s.accounts_max, s.account_count + count)
        grow_array(<void**>&s.accounts, &s.account_capacity, needed, s.accounts_max,
                   sizeof(AccountRecord))
        table_reserve(&s.account_table, needed)
        self._reserve_undo(count, any_linked)
        return 0

    cdef int _reserve_undo(self, uint64_t count, bint any_linked) except -1:
        """Room to roll back a linked chain: only a batch with a linked event needs it."""
        cdef State* s = &self.state
        cdef uint64_t needed
        if any_linked:
            needed = count * UNDO_PER_EVENT_MAX
            grow_array(<void**>&s.undo, &s.undo_capacity, needed, needed * 2 + 16,
                       sizeof(UndoEntry))
        return 0

    cdef uint64_t _base_timestamp(self, now_ns, uint64_t count) except? 0:
        _check_u64(now_ns, "now_ns")
        cdef uint64_t now = now_ns
        cdef uint64_t last = self.state.last_timestamp
        if now <= last:
            if last == U64_MAX:
                raise ValueError("the ledger clock would pass 2**64-1")
            now = last + 1
        if count - 1 > U64_MAX - now:
            raise ValueError("the ledger clock would pass 2**64-1")
        return now

    # -------------------------------------------------------------------- batches

    def create_accounts(self, batch, now_ns):
        return self._run_batch(batch, now_ns, False)

    def create_transfers(self, batch, now_ns):
        return self._run_batch(batch, now_ns, True)

    cdef list _run_batch(self, batch, now_ns, bint transfers):
        """One batch of accounts or transfers: both kinds are 128-byte records, checked,
        aligned and reserved the same way before their C loop runs once with no Python
        calls in it."""
        cdef Py_buffer view
        cdef uint64_t count, base, index
        cdef const void* records
        cdef void* aligned = NULL
        cdef bint any_linked = False
        _get_batch(batch, &view)
        try:
            count = <uint64_t>view.len // RECORD_BYTES
            if count == 0:
                return []
            base = self._base_timestamp(now_ns, count)
            records = view.buf
            # The C loops read uint64 fields: a misaligned buffer (a slice of bytes at an
            # odd offset) is copied once rather than read unaligned.
            if (<uintptr_t>view.buf) & 7:
                aligned = PyMem_Malloc(view.len)
                if aligned == NULL:
                    raise MemoryError()
                memcpy(aligned, view.buf, view.len)
                records = aligned
            if transfers:
                for index in range(count):
                    if (<const TransferRecord*>records)[index].flags & T_LINKED:
                        any_linked = True
                        break
                self._reserve_for_transfers(count, any_linked)
            else:
                for index in range(count):
                    if (<const AccountRecord*>records)[index].flags & A_LINKED:
                        any_linked = True
                        break
                self._reserve_for_accounts(count, any_linked)
            self.state.last_timestamp = base + count - 1
            if transfers:
                run_transfers(&self.state, <const TransferRecord*>records, count, base)
            else:
                run_accounts(&self.state, <const AccountRecord*>records, count, base)
        finally:
            PyMem_Free(aligned)
            PyBuffer_Release(&view)
        results = self._failures(count, _TRANSFER_RESULTS if transfers else _ACCOUNT_RESULTS)
        if self.debug_checks:
            self.check_invariants()
        return results

    cdef list _failures(self, uint64_t count, tuple members):
        cdef list failures = []
        cdef uint64_t index
        cdef uint8_t* codes = self.state.codes
        for index in range(count):
            if codes[index]:
                failures.append((index, members[codes[index]]))
        return failures

    def create_transfer(self, id, debit_account_id, credit_account_id, amount_minor,
                        pending_id, user_data_64, user_data_32, timeout_ms, ledger, code,
                        flags, now_ns):
        """One transfer, exactly as `create_transfers` with a batch of one (see api.py)."""
        cdef TransferRecord record
        cdef uint64_t base
        # Cython's C-integer conversion truncates a float (5.7 -> 5) where the reference's
        # struct.pack refuses it: check the types first, so money never loses a fraction.
        if not (isinstance(id, int) and isinstance(debit_account_id, int)
                and isinstance(credit_account_id, int) and isinstance(amount_minor, int)
                and isinstance(pending_id, int) and isinstance(user_data_64, int)
                and isinstance(user_data_32, int) and isinstance(timeout_ms, int)
                and isinstance(ledger, int) and isinstance(code, int)
                and isinstance(flags, int)):
            raise ValueError("transfer field out of range: required argument is not an integer")
        try:
            record.id = id
            record.debit_account_id = debit_account_id
            record.credit_account_id = credit_account_id
            record.amount_minor = amount_minor
            record.pending_id = pending_id
            record.user_data_64 = user_data_64
            record.timestamp = 0
            record.user_data_32 = user_data_32
            record.timeout_ms = timeout_ms
            record.ledger = ledger
            record.code = code
            record.flags = flags
        except OverflowError as error:  # a field out of its unsigned range: a caller bug
            raise ValueError(f"transfer field out of range: {error}") from None
        base = self._base_timestamp(now_ns, 1)
        self._reserve_for_transfers(1, (record.flags & T_LINKED) != 0)
        self.state.last_timestamp = base
        run_transfers(&self.state, &record, 1, base)
        result = _TRANSFER_RESULTS[self.state.codes[0]]
        if self.debug_checks:
            self.check_invariants()
        return result

    # -------------------------------------------------------------------- expiry

    def expire_pending(self, now_ns):
        _check_u64(now_ns, "now_ns")
        cdef State* s = &self.state
        cdef uint64_t now = now_ns
        cdef uint64_t count = 0, offset, base, index, ring_index
        cdef uint64_t debit_index, credit_index, amount
        cdef PendingEntry* entry
        cdef uint16_t flags
        # Count the due transfers first (a refused call must change nothing): walk the heap
        # for every entry with deadline <= now (a subtree is skipped once its root is due
        # later), then expire them in (deadline, timestamp) order by popping the minimum.
        count = _count_due(s, 0, now)
        if count == 0:
            return []
        base = self._base_timestamp(now_ns, count)
        # Each expiry may write two history rows: grow first, as before a batch.
        grow_array(<void**>&s.history, &s.history_capacity,
                   min(s.history_max, s.history_count + 2 * count), s.history_max,
                   sizeof(HistoryRow))
        self.state.last_timestamp = base + count - 1
        expired = []
        for offset in range(count):
            index = s.heap[0].pool_index
            entry = &s.pool[index]
            expired.append(entry.retained.record.id)
            debit_index = table_find(&s.account_table, entry.retained.record.debit_account_id)
            credit_index = table_find(&s.account_table,
                                      entry.retained.record.credit_account_id)
            amount = entry.retained.record.amount_minor
            flags = entry.retained.record.flags
            s.accounts[debit_index].debits_pending -= amount
            s.accounts[credit_index].credits_pending -= amount
            if flags & T_CLOSING_DEBIT:
                s.accounts[debit_index].flags &= ~A_CLOSED
            if flags & T_CLOSING_CREDIT:
                s.accounts[credit_index].flags &= ~A_CLOSED
            ring_index = table_find(&s.ring_table, entry.retained.record.id)
            if ring_index != NO_INDEX:
                s.ring[ring_index].status = STATUS_EXPIRED
            pool_remove_entry(s, index)
            history_rows(s, debit_index, credit_index, base + offset)
        if self.debug_checks:
            self.check_invariants()
        return expired

    # -------------------------------------------------------------------- totals

    def totals(self):
        cdef State* s = &self.state
        cdef uint64_t sums[8]
        cdef uint64_t index
        cdef AccountRecord* account
        memset(sums, 0, sizeof(sums))
        for index in range(s.account_count):
            account = &s.accounts[index]
            _add_u128(&sums[0], &sums[1], account.debits_pending)
            _add_u128(&sums[2], &sums[3], account.debits_posted)
            _add_u128(&sums[4], &sums[5], account.credits_pending)
            _add_u128(&sums[6], &sums[7], account.credits_posted)
        return (_u128(sums[0], sums[1]), _u128(sums[2], sums[3]),
                _u128(sums[4], sums[5]), _u128(sums[6], sums[7]))

    # ------------------------------------------- kernel API (ledger/common.py calls it)

    def _account_record(self, uint64_t account_id):
        cdef State* s = &self.state
        cdef uint64_t index
        if account_id == 0 or account_id == U64_MAX:  # never stored; 0 marks a free slot
            return None
        index = table_find(&s.account_table, account_id)
        if index == NO_INDEX:
            return None
        return PyBytes_FromStringAndSize(<const char*>&s.accounts[index], sizeof(AccountRecord))

    def _transfer_record(self, uint64_t transfer_id):
        cdef State* s = &self.state
        cdef uint64_t index
        if transfer_id == 0 or transfer_id == U64_MAX:
            return None
        index = table_find(&s.ring_table, transfer_id)
        if index != NO_INDEX:
            return PyBytes_FromStringAndSize(<const char*>&s.ring[index], sizeof(Retained))
        if s.pool_count:
            index = table_find(&s.pool_table, transfer_id)
            if index != NO_INDEX:
                return PyBytes_FromStringAndSize(<const char*>&s.pool[index].retained,
                                                 sizeof(Retained))
        return None

    def _history_records(self, uint64_t account_id, uint64_t limit):
        """Up to `limit` rows of the account, newest first: counted, then copied."""
        cdef State* s = &self.state
        cdef uint64_t back, found = 0, written = 0
        cdef HistoryRow* row
        cdef char* out
        for back in range(1, s.history_count + 1):
            if found == limit:
                break
            if s.history[(s.history_head + s.history_max - back) % s.history_max].account_id \
                    == account_id:
                found += 1
        data = PyBytes_FromStringAndSize(NULL, found * sizeof(HistoryRow))
        out = PyBytes_AS_STRING(data)
        for back in range(1, s.history_count + 1):
            if written == found:
                break
            row = &s.history[(s.history_head + s.history_max - back) % s.history_max]
            if row.account_id == account_id:
                memcpy(out + written * sizeof(HistoryRow), row, sizeof(HistoryRow))
                written += 1
        return data

    def _open_pending_minor(self):
        cdef State* s = &self.state
        cdef uint64_t high = 0, low = 0, index
        for index in range(s.pool_used):
            if s.pool[index].retained.record.id != 0:
                _add_u128(&high, &low, s.pool[index].retained.record.amount_minor)
        return _u128(high, low)

    def _check_kernel(self):
        cdef State* s = &self.state
        cdef uint64_t index
        cdef AccountRecord* account
        if s.pool_table.count != s.pool_count or s.heap_count > s.pool_count:
            raise AssertionError("pending pool bookkeeping is inconsistent")
        if s.ring_table.count != s.ring_count or s.account_table.count != s.account_count:
            raise AssertionError("id tables disagree with their arrays")
        # Every array is grown before it is written; a count past its capacity means a
        # write went past the end (a missing reserve), so say so loudly.
        if (s.ring_count > s.ring_capacity or s.history_count > s.history_capacity
                or s.pool_used > s.pool_capacity or s.account_count > s.account_capacity):
            raise AssertionError("an array was written past its capacity")
        for index in range(s.account_count):
            account = &s.accounts[index]
            if (account.flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS and
                    account.debits_pending + account.debits_posted > account.credits_posted):
                raise AssertionError(f"account {account.id} debits exceed credits")
            if (account.flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS and
                    account.credits_pending + account.credits_posted > account.debits_posted):
                raise AssertionError(f"account {account.id} credits exceed debits")

    def _state_counts(self):
        cdef State* s = &self.state
        return s.account_count, s.ring_count, s.pool_count, s.history_count

    def _export_state(self, bytes header):
        """`header`, then accounts, the retained ring oldest first, the pending pool by
        timestamp and history oldest first, each copied straight from its C array."""
        cdef State* s = &self.state
        cdef uint64_t size, index, start, offset, n = 0
        cdef char* out
        cdef ponte_order_key* keys = NULL
        size = (len(header) + s.account_count * sizeof(AccountRecord)
                + (s.ring_count + s.pool_count) * sizeof(Retained)
                + s.history_count * sizeof(HistoryRow))
        data = PyBytes_FromStringAndSize(NULL, size)
        out = PyBytes_AS_STRING(data)
        offset = len(header)
        memcpy(out, <const char*>header, offset)
        memcpy(out + offset, s.accounts, s.account_count * sizeof(AccountRecord))
        offset += s.account_count * sizeof(AccountRecord)
        start = (s.ring_head + s.ring_max - s.ring_count) % s.ring_max if s.ring_count else 0
        for index in range(s.ring_count):
            memcpy(out + offset, &s.ring[(start + index) % s.ring_max], sizeof(Retained))
            offset += sizeof(Retained)
        if s.pool_count:
            keys = <ponte_order_key*>PyMem_Malloc(s.pool_count * sizeof(ponte_order_key))
            if keys == NULL:
                raise MemoryError()
            for index in range(s.pool_used):
                if s.pool[index].retained.record.id != 0:
                    keys[n].timestamp = s.pool[index].retained.record.timestamp
                    keys[n].index = index
                    n += 1
            qsort(keys, n, sizeof(ponte_order_key), ponte_order_key_compare)
            for index in range(n):
                memcpy(out + offset, &s.pool[keys[index].index].retained, sizeof(Retained))
                offset += sizeof(Retained)
            PyMem_Free(keys)
        start = ((s.history_head + s.history_max - s.history_count) % s.history_max
                 if s.history_count else 0)
        for index in range(s.history_count):
            memcpy(out + offset, &s.history[(start + index) % s.history_max],
                   sizeof(HistoryRow))
            offset += sizeof(HistoryRow)
        if offset != size:
            raise AssertionError("snapshot size mismatch")
        return data

    def _load_state(self, uint64_t last_timestamp, bytes accounts, bytes retained,
                    bytes pending, bytes history):
        """The sections of a snapshot (ledger.formats.split_state), into this new kernel."""
        cdef State* s = &self.state
        cdef uint64_t account_count = len(accounts) // sizeof(AccountRecord)
        cdef uint64_t ring_count = len(retained) // sizeof(Retained)
        cdef uint64_t pending_count = len(pending) // sizeof(Retained)
        cdef uint64_t history_count = len(history) // sizeof(HistoryRow)
        cdef const char* source
        cdef uint64_t index
        cdef PendingEntry entry
        if (s.last_timestamp or s.account_count or s.ring_count or s.pool_count
                or s.history_count):
            raise AssertionError("a snapshot loads into a new ledger only")
        if (len(accounts) % sizeof(AccountRecord) or len(retained) % sizeof(Retained)
                or len(pending) % sizeof(Retained) or len(history) % sizeof(HistoryRow)):
            raise AssertionError("a snapshot section is not a whole number of records")
        if account_count:
            self._reserve_for_accounts(account_count, False)
            memcpy(s.accounts, <const char*>accounts, len(accounts))
        for index in range(account_count):
            table_insert(&s.account_table, s.accounts[index].id, index)
        s.account_count = account_count
        grow_array(<void**>&s.ring, &s.ring_capacity, ring_count, s.ring_max,
                   sizeof(Retained))
        table_reserve(&s.ring_table, ring_count)
        source = retained
        for index in range(ring_count):
            ring_push(s, <const Retained*>(source + index * sizeof(Retained)))
        if pending_count:
            self._grow_pool(pending_count)
            table_reserve(&s.pool_table, pending_count)
        source = pending
        for index in range(pending_count):
            memset(&entry, 0, sizeof(PendingEntry))
            memcpy(&entry.retained, source + index * sizeof(Retained), sizeof(Retained))
            entry.deadline_ns = (entry.retained.record.timestamp
                                 + <uint64_t>entry.retained.record.timeout_ms * NS_PER_MS)
            pool_add_entry(s, &entry)
        if history_count:
            grow_array(<void**>&s.history, &s.history_capacity, history_count,
                       s.history_max, sizeof(HistoryRow))
            memcpy(s.history, <const char*>history, len(history))
        s.history_count = history_count
        s.history_head = history_count % s.history_max
        s.last_timestamp = last_timestamp


class Ledger(Kernel, LedgerCommon):
    """The compiled ledger: the C kernel above and the operations both twins share
    (`ledger/common.py`). Contract in `ledger/api.py`."""

    __slots__ = ()


cdef uint64_t _count_due(State* s, uint64_t position, uint64_t now) noexcept nogil:
    """How many heap entries under `position` are due at `now` (deadline <= now)."""
    if position >= s.heap_count or s.heap[position].deadline_ns > now:
        return 0
    return (1 + _count_due(s, 2 * position + 1, now) + _count_due(s, 2 * position + 2, now))


cdef int _get_batch(object batch, Py_buffer* view) except -1:
    """Acquire the batch's buffer; ValueError for anything malformed (a caller bug)."""
    try:
        PyObject_GetBuffer(batch, view, PyBUF_SIMPLE)
    except (BufferError, TypeError) as error:
        raise ValueError(f"batch must be a contiguous buffer: {error}") from None
    if view.len % RECORD_BYTES != 0:
        length = view.len
        PyBuffer_Release(view)
        raise ValueError(f"batch length {length} is not a multiple of {RECORD_BYTES}")
    if view.len // RECORD_BYTES > BATCH_EVENTS_MAX:
        events = view.len // RECORD_BYTES
        PyBuffer_Release(view)
        raise ValueError(f"batch of {events} events exceeds {BATCH_EVENTS_MAX}")
    return 0
