# The compiled ledger core's C layout. Every record mirrors a packed little-endian format
# of `ledger/formats.py` (TRANSFER_STRUCT, ACCOUNT_STRUCT, RETAINED_STRUCT, HISTORY_STRUCT),
# so a batch buffer is cast straight to a C array and a snapshot is written with memcpy.
# Never reorder a field.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef struct TransferRecord:  # 72 bytes, TRANSFER_STRUCT "<7Q3I2H"
    uint64_t id
    uint64_t debit_account_id
    uint64_t credit_account_id
    uint64_t amount_minor
    uint64_t pending_id
    uint64_t user_data_64
    uint64_t timestamp
    uint32_t user_data_32
    uint32_t timeout_ms
    uint32_t ledger
    uint16_t code
    uint16_t flags


cdef struct AccountRecord:  # 72 bytes, ACCOUNT_STRUCT "<7Q3I2H"
    uint64_t id
    uint64_t debits_pending
    uint64_t debits_posted
    uint64_t credits_pending
    uint64_t credits_posted
    uint64_t user_data_64
    uint64_t timestamp
    uint32_t user_data_32
    uint32_t ledger
    uint32_t reserved
    uint16_t code
    uint16_t flags


cdef struct Retained:  # 88 bytes, RETAINED_STRUCT: one slot of the retained ring
    TransferRecord record
    uint64_t amount_bound_minor
    uint8_t kind
    uint8_t status
    uint8_t failed_result
    uint8_t padding[5]


cdef struct PendingEntry:  # an open pending transfer in the pool
    Retained retained       # record.id == 0 while the slot is free
    uint64_t deadline_ns    # while the slot is free: the next free slot (free-list link)
    uint32_t heap_position  # NO_HEAP_POSITION when it never expires (timeout 0)
    uint32_t padding


cdef struct HeapEntry:  # min-heap on (deadline_ns, timestamp) for expire_pending
    uint64_t deadline_ns
    uint64_t timestamp
    uint64_t pool_index


cdef struct HistoryRow:  # 48 bytes, HISTORY_STRUCT
    uint64_t account_id
    uint64_t timestamp
    uint64_t debits_pending
    uint64_t debits_posted
    uint64_t credits_pending
    uint64_t credits_posted


cdef struct IdSlot:
    uint64_t id  # 0 = empty: id 0 is never stored
    uint64_t index


cdef struct IdTable:  # open addressing, linear probing, backward-shift deletion
    IdSlot* slots
    uint64_t mask  # capacity - 1; capacity is a power of two >= 16
    uint64_t count
    uint32_t shift  # 64 - log2(capacity), for Fibonacci hashing


cdef struct UndoEntry:  # one mutation made inside an open linked chain
    uint32_t kind
    uint32_t occupied
    uint64_t index
    uint64_t balances[4]
    uint16_t flags
    PendingEntry saved
    HistoryRow row


cdef struct State:
    uint64_t last_timestamp
    # accounts: creation order, never evicted
    AccountRecord* accounts
    uint64_t account_count
    uint64_t account_capacity
    uint64_t accounts_max
    IdTable account_table
    # retained ring: never wraps before it is full, so it grows by realloc until then
    Retained* ring
    uint64_t ring_head
    uint64_t ring_count
    uint64_t ring_capacity
    uint64_t ring_max
    IdTable ring_table
    # pending pool with a free list, and its expiry heap
    PendingEntry* pool
    uint64_t pool_count
    uint64_t pool_used  # high-water mark of slots ever handed out
    uint64_t pool_capacity
    uint64_t pool_max
    uint64_t pool_free  # head of the free list, NO_INDEX when empty
    IdTable pool_table
    HeapEntry* heap
    uint64_t heap_count
    # history ring
    HistoryRow* history
    uint64_t history_head
    uint64_t history_count
    uint64_t history_capacity
    uint64_t history_max
    # undo log, active only while a linked chain runs
    UndoEntry* undo
    uint64_t undo_count
    uint64_t undo_capacity
    bint undo_active
    # per-batch result codes
    uint8_t* codes


cdef class Kernel:
    cdef State state
    cdef readonly object config
    cdef bint debug_checks

    cdef int _reserve_for_transfers(self, uint64_t count, bint any_linked) except -1
    cdef int _grow_pool(self, uint64_t needed) except -1
    cdef int _reserve_for_accounts(self, uint64_t count, bint any_linked) except -1
    cdef int _reserve_undo(self, uint64_t count, bint any_linked) except -1
    cdef uint64_t _base_timestamp(self, now_ns, uint64_t count) except? 0
    cdef list _run_batch(self, batch, now_ns, bint transfers)
    cdef list _failures(self, uint64_t count, tuple members)
