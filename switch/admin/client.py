"""A small client of the operator JSON API (`/api/admin`), for the `ponte` CLI and the process
launcher: log in as an operator, keep the session, send its CSRF token on every change.

Blocking (urllib, standard library only): the CLI and the launcher are synchronous. A
session can be saved to a file readable by its owner only (mode 0600), so `ponte admin
login` once serves the later commands until the session ends (30 minutes idle, 12 hours at
most). It must never print or log a password, a session token or an API key; an API key
is only ever returned to the caller that approved its issue.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path

SESSION_COOKIE = "ponte_session"  # switch/admin/web.py
CSRF_HEADER = "X-CSRF-Token"
SESSION_FILE_DEFAULT = "~/.config/ponte/session.json"
REQUEST_TIMEOUT_S = 30


class OperatorApiError(Exception):
    """The console refused (an `AdminError` body) or could not be reached (`status` 0)."""

    def __init__(self, status: int, body: dict) -> None:
        self.status = status
        self.body = body
        self.result = str(body.get("result", ""))
        self.code = int(body.get("code", 0) or 0)
        self.detail = str(body.get("detail", ""))
        self.core_result = int(body.get("core_result", 0) or 0)
        text = f"{status}: {self.result} {self.detail}".strip() if status else self.detail
        super().__init__(text)


class OperatorClient:
    """One operator's session with a console at `url`."""

    def __init__(self, url: str, *, token: str = "", csrf_token: str = "", username: str = "",
                 ca_file: str = "") -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.csrf_token = csrf_token
        self.username = username
        self.ca_file = ca_file

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)

    def request(self, method: str, path: str, body=None, params: dict | None = None):
        """The decoded JSON answer; OperatorApiError for a refusal or no answer."""
        query = ""
        if params:
            query = "?" + urllib.parse.urlencode({k: v for k, v in params.items()
                                                  if v not in ("", None)})
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.token}"
        if self.csrf_token and method not in ("GET", "HEAD"):
            headers[CSRF_HEADER] = self.csrf_token
        request = urllib.request.Request(self.url + path + query, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S,
                                        context=self._context()) as response:
                self._keep_cookie(response.headers)
                raw = response.read()
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"result": error.reason, "detail": raw[:200].decode(errors="replace")}
            raise OperatorApiError(error.code, answer if isinstance(answer, dict) else {}) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise OperatorApiError(0, {"detail": f"cannot reach the console at {self.url}: "
                                                 f"{reason} (is console_enabled = true?)"}) from None
        return json.loads(raw) if raw else None

    def _keep_cookie(self, headers) -> None:
        for value in headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(value)
            if SESSION_COOKIE in cookie:
                self.token = cookie[SESSION_COOKIE].value

    def download(self, path: str, out, params: dict | None = None,
                 chunk_bytes: int = 1 << 16) -> int:
        """Stream a document (a settlement statement, RTGS instructions) into the binary
        file `out`, a chunk at a time; the bytes written. OperatorApiError when refused."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        headers = {"Accept": "*/*"}
        if self.token:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.token}"
        request = urllib.request.Request(self.url + path + query, method="GET", headers=headers)
        written = 0
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S,
                                        context=self._context()) as response:
                while chunk := response.read(chunk_bytes):
                    out.write(chunk)
                    written += len(chunk)
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"result": error.reason, "detail": raw[:200].decode(errors="replace")}
            raise OperatorApiError(error.code, answer if isinstance(answer, dict) else {}) from None
        except (urllib.error.URLError, OSError) as error:
            raise OperatorApiError(0, {"detail": f"cannot reach the console at {self.url}: "
                                                 f"{getattr(error, 'reason', error)}"}) from None
        return written

    def post_document(self, path: str, document: bytes, content_type: str = "application/xml"):
        """POST a document that is not JSON (an RTGS answer); the decoded JSON answer."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self.token:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.token}"
        if self.csrf_token:
            headers[CSRF_HEADER] = self.csrf_token
        request = urllib.request.Request(self.url + path, data=document, method="POST",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S,
                                        context=self._context()) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"result": error.reason, "detail": raw[:200].decode(errors="replace")}
            raise OperatorApiError(error.code, answer if isinstance(answer, dict) else {}) from None
        except (urllib.error.URLError, OSError) as error:
            raise OperatorApiError(0, {"detail": f"cannot reach the console at {self.url}: "
                                                 f"{getattr(error, 'reason', error)}"}) from None

    def get(self, path: str, **params):
        return self.request("GET", path, params=params)

    def post(self, path: str, body=None):
        return self.request("POST", path, {} if body is None else body)

    # -- sessions ---------------------------------------------------------------------------

    @classmethod
    def login(cls, url: str, username: str, password: str, *, ca_file: str = "") -> OperatorClient:
        client = cls(url, username=username, ca_file=ca_file)
        answer = client.request("POST", "/api/admin/session",
                                {"username": username, "password": password})
        client.csrf_token = answer["csrf_token"]
        if not client.token:
            raise OperatorApiError(0, {"detail": "the console set no session cookie"})
        return client

    def logout(self) -> None:
        self.request("DELETE", "/api/admin/session")
        self.token = self.csrf_token = ""

    def save(self, path: str) -> None:
        """Write the session to `path`, readable by its owner only."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps({"url": self.url, "username": self.username, "token": self.token,
                           "csrf_token": self.csrf_token, "ca_file": self.ca_file}).encode()
        temporary = str(target) + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, target)

    @classmethod
    def load(cls, path: str) -> OperatorClient:
        """The saved session; OperatorApiError when there is none."""
        target = Path(path).expanduser()
        try:
            saved = json.loads(target.read_bytes())
            return cls(saved["url"], token=saved["token"], csrf_token=saved["csrf_token"],
                       username=saved.get("username", ""), ca_file=saved.get("ca_file", ""))
        except (OSError, ValueError, KeyError):
            raise OperatorApiError(0, {"detail": f"not logged in (no session in {target}): "
                                                 "run `ponte admin login` first"}) from None

    @staticmethod
    def forget(path: str) -> None:
        Path(path).expanduser().unlink(missing_ok=True)

    # -- maker-checker -------------------------------------------------------------------------

    def propose(self, body: dict) -> dict:
        return self.post("/api/admin/proposals", body)

    def decide(self, proposal_id: str, approve: bool, note: str = "") -> dict:
        return self.post(f"/api/admin/proposals/{proposal_id}/decision",
                         {"approve": approve, "note": note})
