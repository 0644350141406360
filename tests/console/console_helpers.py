"""Shared pieces of the console tests (a plain module, not conftest: importing `conftest` by
name picks whichever conftest the whole suite imported first)."""

from __future__ import annotations

PASSWORD = "correct horse battery staple"


def log_in(page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
