"""Settlement outside the core: the documents and files that settlement needs and the core
must never produce — RTGS instructions (ISO 20022 pacs.009), the RTGS's answers (pacs.002),
statements (camt.053, camt.052, CSV), reconciliation — and the log of committed entries
they are built from.

The rules (windows, net positions, postings) are the core's (`switch/core/settlement.py`);
this package reads the core between two steps and submits operator events like any other
operator surface. It may depend on switch.core, ledger, switch.server and the admin's money
formatting; nothing in the core, the server or a connector may import it (the composition
root wires it: `switch/app.py`). See docs/settlement.md.
"""
