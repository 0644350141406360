"""Operator API: authentication, roles, maker-checker and the audit log."""
