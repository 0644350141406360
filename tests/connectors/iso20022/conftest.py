"""Fixtures of the ISO 20022 connector tests; they live in iso_helpers.py (a unique module
name: several test folders have a conftest.py)."""

from iso_helpers import iso  # noqa: F401 - pytest fixture
