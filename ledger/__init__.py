"""Ponte's double-entry ledger: a TigerBeetle-style state machine, embedded in the switch.

`Ledger` is the compiled Cython core when it was built, else the pure-Python twin with the
same API (`ledger/reference.py`). `PONTE_PURE_PYTHON=1` forces the twin. The ledger does no
I/O and never reads the clock: callers pass `now_ns`. Its contract is `ledger/api.py`.
"""

import os

from ledger.config import LedgerConfig
from ledger.reference import Ledger as PureLedger
from ledger.types import (
    Account,
    AccountBalance,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    PendingStatus,
    Transfer,
    TransferFlags,
)

CompiledLedger = None
COMPILED_IMPORT_ERROR: str | None = None
try:
    from ledger._core import Ledger as CompiledLedger  # type: ignore[no-redef]
except ImportError as error:  # not built: no compiler at install time
    COMPILED_IMPORT_ERROR = str(error)

if CompiledLedger is not None and os.environ.get("PONTE_PURE_PYTHON") != "1":
    Ledger = CompiledLedger
    IMPLEMENTATION = "compiled"
else:
    Ledger = PureLedger
    IMPLEMENTATION = "pure"

__all__ = [
    "Account",
    "AccountBalance",
    "AccountFlags",
    "CompiledLedger",
    "CreateAccountResult",
    "CreateTransferResult",
    "IMPLEMENTATION",
    "Ledger",
    "LedgerConfig",
    "PendingStatus",
    "PureLedger",
    "Transfer",
    "TransferFlags",
]
