"""The sans-I/O core of the switch: messages, the transfer state machine, limits and fees.

It imports no asyncio, sockets or database drivers and never reads the clock: `now_ns` is an
argument. `tests/core/test_purity.py` enforces that.
"""
