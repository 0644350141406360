"""G2P disbursement: a programme (a participant of kind `government`) pays batches of up to
1,000,000 beneficiaries, each row an ordinary Ponte transfer to the participant the G2P
mapper names. See docs/g2p.md.

`engine.py` runs batches (pacing, outcomes, funding pauses, recovery), `reports.py` writes
summaries and per-row reports, `ports.py` says what it needs from a store. Nothing in
`switch/core` may import this package; it never holds a raw national ID (rows carry the
directory's identity token from the moment they are read).
"""
