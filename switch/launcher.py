"""Run a switch and simulators as real processes on this box: for `ponte demo`, `ponte bench
e2e` and the end-to-end tests.

`SwitchProcess` writes a TOML config, starts `python -m switch.server run` and waits for its
/health; it changes the switch like operators would: two launcher admins (created in the
switch's admin store, random passwords kept in memory) log in to its console, one proposes
and the other approves, audited like any operator. `SimProcess` starts `python -m
connectors.sim run` and collects its JSON lines. `onboard_population` creates the
population's participants (currency, accounts, funding, API keys). It must never reach into
a process: only sockets, signals, stdout and the admin store's rows — and never leave one
running (stop()).

Children are started through this module (`python -m switch.launcher FD MODULE
ARGS...`) with the read end of a pipe whose write end only this process holds: a watcher
thread in the child reads it, and end of file means this process is gone (exited, crashed,
SIGKILLed), so the child sends itself SIGTERM and shuts down as if stopped. Unlike Linux's
parent-death signal, which is tied to the thread that forked, this follows the process, so
a child started from a short-lived thread lives on.
"""

from __future__ import annotations

import json
import os
import queue
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Mapping

import msgspec

# A directory configuration fit for the population model's synthetic people: Kenyan-style
# 10-digit national IDs without a checksum, and anti-enumeration buckets wide enough for a
# load test (the scheme defaults would, rightly, throttle one user paying 100 times a minute).
SIM_BUCKET = {"capacity_tokens": 1_000_000, "refill_tokens_per_minute": 1_000_000,
              "hit_cost_tokens": 1, "miss_cost_tokens": 20, "refund_tokens": 1}
SIM_DIRECTORY = {
    "national_id_formats": {"KE": {"pattern": "[0-9]{10}", "checksum": "none"}},
    "national_id_country_default": "KE",
    "user_bucket": SIM_BUCKET,
    "participant_buckets": {"SIM": SIM_BUCKET},
    "participant_category_default": "SIM",
}
HEALTH_TIMEOUT_S = 120.0
# What a child sends itself when the process that started it is gone: its graceful stop.
PARENT_DEATH_SIGNAL = signal.SIGTERM


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sim_server_config(data_dir: str, **extra) -> dict:
    """A ServerConfig (as a dict) for simulators: ports picked free, sim directory rules."""
    config = {
        "data_dir": data_dir,
        "stream_port": free_port(),
        "admin_port": free_port(),
        "console_enabled": True,  # the operator surface the launcher onboards through
        "console_port": free_port(),
        "directory": dict(SIM_DIRECTORY),
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def _spawn_child(module: str, args: list[str], **popen_options
                 ) -> tuple[subprocess.Popen, int]:
    """Start `python -m module args...` as a child watching a fresh parent link; (process,
    the link's write end, to close once the child has exited)."""
    read_fd, write_fd = os.pipe()  # both ends non-inheritable (PEP 446)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "switch.launcher", str(read_fd), module, *args],
            pass_fds=(read_fd,), **popen_options)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return process, write_fd


def _close_link(write_fd: int | None) -> None:
    """Close a parent link whose child has exited (a live child would take it as our end)."""
    if write_fd is not None:
        os.close(write_fd)


def _watch_parent(read_fd: int) -> None:
    """In the child: SIGTERM ourselves when the parent link reaches end of file."""
    os.set_inheritable(read_fd, False)  # our own children must not keep it open

    def watch() -> None:
        try:
            while os.read(read_fd, 64):
                pass  # the parent never writes: only end of file matters
        except OSError:
            pass
        os.kill(os.getpid(), PARENT_DEATH_SIGNAL)

    threading.Thread(target=watch, name="parent-link", daemon=True).start()


def _child_main(argv: list[str]) -> None:
    read_fd, module, *args = argv
    _watch_parent(int(read_fd))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _file_tail(path: str, lines: int) -> str:
    """The last `lines` lines of a child's log, for an error message ('' if unreadable)."""
    try:
        with open(path, "rb") as file:
            return b"\n".join(file.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def _signal_and_wait(process: subprocess.Popen, signum: int, timeout_s: float) -> None:
    """Ask a still-running child to stop with `signum`; SIGKILL it if it has not exited
    within `timeout_s`, so no stop() ever leaves a process behind."""
    if process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class AdminError(Exception):
    """The switch answered an error status (its small port, or the console: a refused or
    failed proposal); `body` is its typed JSON error."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class SwitchProcess:
    def __init__(self, config: dict, *, log_path: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.data_dir = config["data_dir"]
        self.stream_port = config["stream_port"]
        self.admin_port = config["admin_port"]
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.log_path = log_path or os.path.join(self.data_dir, "switch.log")
        self.env = env
        self.process: subprocess.Popen | None = None
        self._link: int | None = None  # write end of the child's parent link
        self._log = None
        self._operators = None  # (maker, checker) OperatorClients, logged in once
        self._operator_passwords: list[tuple[str, str, str]] = []

    def start(self, *, wait_healthy: bool = True) -> SwitchProcess:
        """Write the config and spawn `python -m switch.server run`; by default return once
        /health answers (`wait_healthy=False`: at once, for timing a start elsewhere)."""
        os.makedirs(self.data_dir, exist_ok=True)
        path = os.path.join(self.data_dir, "switch.json")
        with open(path, "wb") as file:
            file.write(msgspec.json.encode(self.config))
        self._log = open(self.log_path, "ab")
        environment = dict(os.environ)
        environment.update(self.env or {})
        _close_link(self._link)  # a restart: the previous child has exited
        self.process, self._link = _spawn_child(
            "switch.server", ["run", "--config", path],
            stdout=self._log, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True)
        if wait_healthy:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"switch exited with {self.process.returncode}; see "
                                   f"{self.log_path}:\n{self.log_tail()}")
            try:
                return self.get("/health")
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise RuntimeError(f"switch not healthy after {timeout_s}s; see {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        return _file_tail(self.log_path, lines)

    @property
    def admin_token(self) -> str:
        if self.config.get("admin_token"):  # configured (e.g. shared by a primary's standby)
            return self.config["admin_token"]
        with open(os.path.join(self.data_dir, "secrets.json")) as file:
            return json.load(file)["admin_token"]

    def wait_role(self, role: str, timeout_s: float = HEALTH_TIMEOUT_S) -> dict:
        """/health once this process reports `role` ("primary" after a standby's
        takeover) and, as a primary, accepts."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"switch exited with {self.process.returncode}; see "
                                   f"{self.log_path}:\n{self.log_tail()}")
            try:
                health = self.get("/health")
            except (OSError, urllib.error.URLError):
                health = {}
            if health.get("role") == role and (role != "primary" or health["accepting"]):
                return health
            time.sleep(0.01)
        raise RuntimeError(f"switch not {role} after {timeout_s}s; see {self.log_path}")

    def request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if path.startswith("/admin/"):
            headers["Authorization"] = f"Bearer {self.admin_token}"
        request = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                         headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            raise AdminError(error.code, error.read().decode(errors="replace")) from None
        with response:
            payload = response.read()
            if path == "/metrics":
                return payload.decode()
            return json.loads(payload or b"null")

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, body: dict):
        return self.request("POST", path, body)

    def positions(self) -> dict[int, dict]:
        return {row["participant_id"]: row for row in self.get("/admin/participants")}

    # -- changes, as operators: maker-checker through the console ------------------------

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.config['console_port']}"

    def operators(self):
        """(maker, checker): the launcher's two admins, logged in to the console."""
        if self._operators is not None:
            return self._operators
        from switch.admin.client import OperatorClient
        from switch.console.server_port import LAUNCHER_OPERATORS, create_operators

        if not self.config.get("console_enabled"):
            raise RuntimeError("the launcher changes the switch through its console: "
                               "console_enabled must be true")
        if not self._operator_passwords:
            dsn = self.config.get("postgres_dsn", "") if self.config.get(
                "store") == "postgres" else ""
            self._operator_passwords = create_operators(self.data_dir, LAUNCHER_OPERATORS,
                                                        "launcher", dsn)
            if len(self._operator_passwords) != len(LAUNCHER_OPERATORS):
                raise RuntimeError("the launcher's operators exist already with passwords "
                                   "this process does not know")
        self._operators = tuple(
            OperatorClient.login(self.console_url, username, password)
            for username, password, _role in self._operator_passwords)
        return self._operators

    def propose_and_approve(self, body: dict) -> dict:
        """One change: the maker proposes it, the checker approves it; the executed
        proposal (with `api_key` when it issued one). AdminError if refused or failed."""
        from switch.admin.client import OperatorApiError

        maker, checker = self.operators()
        try:
            proposal = maker.propose(body)
            view = checker.decide(proposal["proposal_id"], True)
        except OperatorApiError as error:
            raise AdminError(error.status, json.dumps(error.body)) from None
        if view["state"] != "executed":
            raise AdminError(409, json.dumps(view))
        return view

    def add_currency(self, currency: str, ledger_id: int,
                     settlement_model: str = "prefunded_rtgs", rules: dict | None = None) -> None:
        """Carry a currency; one already carried is left as it is."""
        try:
            self.propose_and_approve({"kind": "currency", "currency": currency,
                                      "ledger_id": ledger_id,
                                      "settlement_model": settlement_model,
                                      "rules": rules or {}})
        except AdminError as error:
            if "ADMIN_CURRENCY_EXISTS" not in error.body:
                raise

    def onboard_participant(self, name: str, kind: str, currencies: list[str], *,
                            funding_minor: int = 0, **fields) -> dict:
        """{participant_id, api_key} of a new participant, funded in prefunded currencies."""
        view = self.propose_and_approve({
            "kind": "onboard", "name": name, "participant_kind": kind,
            "currencies": list(currencies), "funding_minor": funding_minor, **fields})
        return {"participant_id": view["participant_id"], "api_key": view["api_key"]}

    def set_callback_url(self, participant_id: int, url: str) -> None:
        self.propose_and_approve({"kind": "callback_url", "participant_id": participant_id,
                                  "callback_url": url})

    def set_mobilemoney_wallet(self, participant_id: int, api_url: str, **fields) -> None:
        """Put a wallet on the GSMA Mobile Money API hub (connectors/mobilemoney)."""
        self.propose_and_approve({"kind": "mobilemoney_wallet",
                                  "participant_id": participant_id, "api_url": api_url,
                                  **fields})

    def set_fspiop_participant(self, participant_id: int, fsp_id: str, endpoint: str = "",
                               public_key_pem: str = "", **fields) -> None:
        """Put a DFSP on the FSPIOP hub (connectors/fspiop) with its JWS key."""
        self.propose_and_approve({"kind": "fspiop_participant",
                                  "participant_id": participant_id, "fsp_id": fsp_id,
                                  "endpoint": endpoint, "public_key_pem": public_key_pem,
                                  **fields})

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> SwitchProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush — what a power cut looks like to the journal."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        _close_link(self._link)
        self._link = None

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the graceful shutdown."""
        if self.process is None:
            return 0
        _signal_and_wait(self.process, signal.SIGTERM, timeout_s)
        _close_link(self._link)
        self._link = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode


def onboard_population(switch: SwitchProcess, names_kinds: list[tuple[str, str]],
                       currency: str, ledger_id: int, funding_minor: int | Mapping[str, int],
                       rules: dict | None = None) -> dict[str, dict]:
    """Currency + one participant per (name, kind), each funded with `funding_minor` (one
    amount for all, or name -> amount); {name: {participant_id, api_key}}. Through the
    console's maker-checker, as the launcher's two operators."""
    switch.add_currency(currency, ledger_id, "prefunded_rtgs", rules)
    return {name: switch.onboard_participant(
                name, kind, [currency],
                funding_minor=funding_minor if isinstance(funding_minor, int)
                else funding_minor[name])
            for name, kind in names_kinds}


def join_mobilemoney_wallet(switch: SwitchProcess, wallet_names: list[str],
                            credentials: dict, hub_port: int) -> dict:
    """Put the first of `wallet_names` on the switch's GSMA Mobile Money hub (maker-checker)
    with a free port for its own API; {"name", "sim"}: `sim` are the fields that make the
    simulator host it as a wallet speaking only that API (connectors/sim/mobilemoney.py).
    The demo and `ponte bench e2e --mobilemoney-wallet` join one wallet this way."""
    name = wallet_names[0]
    wallet_port = free_port()
    switch.set_mobilemoney_wallet(credentials[name]["participant_id"],
                                  f"http://127.0.0.1:{wallet_port}")
    return {"name": name, "sim": {"protocol": "mobilemoney", "wallet_port": wallet_port,
                                  "hub_url": f"http://127.0.0.1:{hub_port}"}}


class SimProcess:
    """`python -m connectors.sim run --config FILE`, its JSON lines on a queue."""

    def __init__(self, run_config: dict, work_dir: str, name: str = "sims",
                 env: dict[str, str] | None = None) -> None:
        self.run_config = run_config
        self.path = os.path.join(work_dir, f"{name}.json")
        self.log_path = os.path.join(work_dir, f"{name}.log")
        self.env = env
        self.lines: queue.Queue = queue.Queue()
        self.records: list[dict] = []
        self.process: subprocess.Popen | None = None
        self._link: int | None = None  # write end of the child's parent link
        self._reader: threading.Thread | None = None

    def start(self) -> SimProcess:
        with open(self.path, "wb") as file:
            file.write(msgspec.json.encode(self.run_config))
        environment = dict(os.environ)
        environment.update(self.env or {})
        self._stderr = open(self.log_path, "ab")
        self.process, self._link = _spawn_child(
            "connectors.sim", ["run", "--config", self.path],
            stdout=subprocess.PIPE, stderr=self._stderr, env=environment,
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for raw in self.process.stdout:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            self.records.append(record)
            self.lines.put(record)
        self.lines.put(None)

    def next_record(self, timeout_s: float) -> dict | None:
        """The next JSON line (None at end of output); raises queue.Empty on timeout."""
        return self.lines.get(timeout=timeout_s)

    def wait_for(self, record_type: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {record_type!r} line from the simulator; see "
                                   f"{self.log_path}")
            record = self.next_record(remaining)
            if record is None:
                raise RuntimeError(f"simulator exited before {record_type!r}; see "
                                   f"{self.log_path}:\n{self.stderr_tail()}")
            if record.get("type") == record_type:
                return record

    def stderr_tail(self, lines: int = 30) -> str:
        return _file_tail(self.log_path, lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGINT (the simulator's clean stop) and wait for it."""
        if self.process is None:
            return 0
        _signal_and_wait(self.process, signal.SIGINT, timeout_s)
        _close_link(self._link)
        self._link = None
        self._stderr.close()
        return self.process.returncode

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout_s)
        finally:
            if self._reader is not None:
                self._reader.join(5)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
