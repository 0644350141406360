"""Type stub for the compiled ledger core (`ledger/_core.pyx`); contract in `ledger/api.py`."""

from typing import ClassVar

from ledger.api import LedgerKernel
from ledger.common import LedgerCommon
from ledger.config import LedgerConfig
from ledger.types import CreateAccountResult, CreateTransferResult

class Kernel(LedgerKernel):
    """The C kernel: the batch API, and the kernel API (`LedgerKernel`) `LedgerCommon` uses."""

    implementation: ClassVar[str]
    config: LedgerConfig

    def __init__(self, config: LedgerConfig | None = None) -> None: ...
    def create_accounts(self, batch, now_ns: int) -> list[tuple[int, CreateAccountResult]]: ...
    def create_transfers(self, batch, now_ns: int) -> list[tuple[int, CreateTransferResult]]: ...
    def create_transfer(
        self, id: int, debit_account_id: int, credit_account_id: int, amount_minor: int,
        pending_id: int, user_data_64: int, user_data_32: int, timeout_ms: int, ledger: int,
        code: int, flags: int, now_ns: int,
    ) -> CreateTransferResult: ...
    def expire_pending(self, now_ns: int) -> list[int]: ...
    def totals(self) -> tuple[int, int, int, int]: ...
    @property
    def last_timestamp(self) -> int: ...
    @property
    def account_count(self) -> int: ...
    @property
    def pending_count(self) -> int: ...

class Ledger(Kernel, LedgerCommon):
    """The compiled ledger: `Kernel` plus the operations both twins share."""
