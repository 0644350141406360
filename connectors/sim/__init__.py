"""Simulated banks and wallets: customers from connectors/sim/population.py, aliases registered in
the directory through the switch, configurable answer latency and reject/silence/return
rates, traffic at a fixed rate, and books that reconcile exactly with the switch's ledger.

`connectors.sim.runner.SimRunner` hosts participants in one process (`ponte sim run`);
`connectors.sim.books.reconcile` compares a participant's books with its ledger account.
Simulators use the SDK only, like any real participant: they must never read the switch's
state any other way.
"""
