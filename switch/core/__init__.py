"""The sans-I/O core of the switch: messages, the transfer state machine, limits and fees.

It imports no asyncio, sockets or database drivers and never reads the clock: `now_ns` is an
argument. `tests/core/test_purity.py` enforces that. Start at `SwitchCore` (machine.py) and
docs/core.md.
"""

from switch.core.codec import decode_event, decode_events, encode_event
from switch.core.config import CoreConfig
from switch.core.machine import SwitchCore, TransferRecord
from switch.core.results import (
    ParticipantStatus,
    ProtocolError,
    RequestToPayState,
    Result,
    SettlementModel,
    TransferState,
)

__all__ = [
    "CoreConfig",
    "ParticipantStatus",
    "ProtocolError",
    "RequestToPayState",
    "Result",
    "SettlementModel",
    "SwitchCore",
    "TransferRecord",
    "TransferState",
    "decode_event",
    "decode_events",
    "encode_event",
]
