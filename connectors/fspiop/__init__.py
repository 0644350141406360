"""The Mojaloop FSPIOP 1.1 hub connector (docs/fspiop.md)."""
