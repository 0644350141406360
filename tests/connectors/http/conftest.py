"""Fixtures of the HTTP connector tests; they live in http_helpers.py (a unique module
name: several test folders have a conftest.py, so tests import helpers from there)."""

from http_helpers import payer_and_payee, switch  # noqa: F401 - pytest fixtures
