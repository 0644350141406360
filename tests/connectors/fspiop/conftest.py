"""Fixtures of the FSPIOP tests live in fspiop_helpers.py (a unique module name)."""
