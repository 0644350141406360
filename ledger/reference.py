"""Pure-Python twin of the ledger core (placeholder until implemented)."""


class Ledger:  # replaced by the full implementation
    implementation = "pure"
