"""Ponte, the switch: core decisions, directory, settlement, and the I/O shell around them."""

__version__ = "0.1.0"
