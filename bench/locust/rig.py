"""The system under load, on this box: a switch process (stream, HTTP and admin listeners,
durable file journal) and a payee process (`bench.locust.payees`: the simulated banks and
wallets answering credit requests), with the load participants onboarded.

Who is who. Every population participant (bank_a, wallet_a, ...) is onboarded as itself and
hosted by the payee process: aliases resolve to it and it answers the credit requests. The
load side pays as separate payer identities, one per population participant per slot
(`bank_a_load0`, ...; `plan.load_name`): the switch pushes a participant's messages to its
oldest stream connection, so a payer that shares its identity with a payee simulator would
never see its own outcomes. One slot serves one load process (the driver, or one locust
worker), so each stream payer is the only connection of its identity.

`Rig(...).start()` writes `rig.json` (mode 0600: it holds the load identities' API keys) for
the load generators — `RigInfo` is its shape — and `stop()` stops the payees, then the
switch (graceful shutdown). `python -m bench.locust.rig --profile quick --slots 2` keeps a
rig up until Ctrl-C, for locust's web UI or a distributed run.

It talks to the switch only through its public surfaces (admin HTTP, stream, HTTP) and must
never leave a process behind.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import msgspec

from bench.locust import limits
from bench.locust.plan import load_name
from connectors.sim.population import Population, Profile, ProfileError, load_profile
from connectors.sim.participant import SimOptions
from switch.server.launcher import SwitchProcess, free_port, onboard_population, sim_server_config

RIG_FILE = "rig.json"
# ISO 4217 numeric codes: the ledger id of a currency.
LEDGER_IDS = {"KES": 404, "BRL": 986, "USD": 840, "EUR": 978, "INR": 356, "NGN": 566}
LEDGER_ID_FALLBACK = 999


class RigError(Exception):
    """The rig could not be started: a process exited or did not become ready in time."""


class LoadIdentity(msgspec.Struct, frozen=True, kw_only=True):
    slot: int
    participant: str  # the population participant it pays for
    name: str
    participant_id: int
    api_key: str


class RigInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What load generators need to reach the rig (the content of rig.json)."""

    profile: str
    seed: int
    currency: str
    slots: int
    stream_host: str
    stream_port: int
    http_url: str  # "" when the switch runs without its HTTP connector
    admin_url: str
    switch_pid: int
    participant_ids: dict[str, int]  # population participant -> id (the payees)
    load: list[LoadIdentity]

    def identity(self, slot: int, participant: str) -> LoadIdentity:
        for identity in self.load:
            if identity.slot == slot and identity.participant == participant:
                return identity
        raise KeyError(f"no load identity for slot {slot} and {participant!r}")

    def slot_identities(self, slot: int) -> dict[str, LoadIdentity]:
        found = {i.participant: i for i in self.load if i.slot == slot}
        if not found:
            raise KeyError(f"the rig has no slot {slot} (slots: {self.slots})")
        return found


def read_rig(path: str) -> RigInfo:
    with open(path, "rb") as file:
        return msgspec.json.decode(file.read(), type=RigInfo)


def write_rig(path: str, info: RigInfo) -> None:
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.encode(info))
    os.replace(path + ".tmp", path)


class _JsonLinesProcess:
    """A child process whose stdout is JSON lines, read by a thread onto a queue."""

    def __init__(self, argv: list[str], log_path: str) -> None:
        self.argv = argv
        self.log_path = log_path
        self.lines: queue.Queue = queue.Queue()
        self.process: subprocess.Popen | None = None
        self._log = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._log,
                                        start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="ponte-rig-reader")
        self._reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue
        self.lines.put(None)

    def wait_for(self, record_type: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RigError(f"no {record_type!r} line in {timeout_s} s; see {self.log_path}")
            try:
                record = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if record is None:
                raise RigError(f"{self.argv[2]} exited before {record_type!r}; see "
                               f"{self.log_path}:\n{_tail(self.log_path)}")
            if record.get("type") == record_type:
                return record

    def stop(self, timeout_s: float = limits.PROCESS_STOP_S_MAX) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as file:
            return b"\n".join(file.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


class Rig:
    """Start with `start()` (or `with Rig(...) as rig:`); `info` then says how to reach it."""

    def __init__(self, profile: str | Profile, *, seed: int = 1, slots: int = 1,
                 http: bool = True, work_dir: str | None = None, keep_data: bool = False,
                 payee_options: SimOptions = SimOptions(),
                 server_overrides: dict | None = None) -> None:
        if not 1 <= slots <= limits.SLOTS_MAX:
            raise ValueError(f"slots must be in [1, {limits.SLOTS_MAX}], not {slots}")
        self.profile_source = profile
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.seed = seed
        self.slots = slots
        self.http = http
        self.keep_data = keep_data
        self.payee_options = payee_options
        self.server_overrides = server_overrides or {}
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="ponte-rig-")
        self.data_dir = os.path.join(self.work_dir, "switch")
        self.rig_path = os.path.join(self.work_dir, RIG_FILE)
        self.switch: SwitchProcess | None = None
        self.payees: _JsonLinesProcess | None = None
        self.info: RigInfo | None = None
        self.ready: dict = {}
        self.payees_final: dict | None = None

    # -- start -----------------------------------------------------------------------

    def start(self) -> Rig:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        profile = self.profile
        os.makedirs(self.work_dir, exist_ok=True)
        extra = dict(self.server_overrides)
        http_port = 0
        if self.http:
            http_port = free_port()
            extra.update(http_enabled=True, http={"port": http_port})
        config = sim_server_config(self.data_dir, **extra)
        self.switch = SwitchProcess(config)
        self.switch.start()

        population_names = [(p.participant_id, p.kind.value) for p in profile.participants]
        load_names = [(load_name(p.participant_id, slot), p.kind.value)
                      for slot in range(self.slots) for p in profile.participants]
        created = onboard_population(
            self.switch, population_names + load_names, profile.currency,
            LEDGER_IDS.get(profile.currency, LEDGER_ID_FALLBACK), limits.FUNDING_MINOR)

        profile_path = os.path.join(self.work_dir, "profile.json")
        profile_arg = self._profile_argument(profile_path)
        payees_config = {
            "port": self.switch.stream_port,
            "profile": profile_arg,
            "seed": self.seed,
            "participants": [{"name": name, "api_key": created[name]["api_key"],
                              "opening_position_minor": limits.FUNDING_MINOR}
                             for name, _ in population_names],
            "options": msgspec.to_builtins(self.payee_options),
        }
        config_path = os.path.join(self.work_dir, "payees.json")
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(msgspec.json.encode(payees_config))
        self.payees = _JsonLinesProcess(
            [sys.executable, "-m", "bench.locust.payees", "--config", config_path],
            os.path.join(self.work_dir, "payees.log"))
        self.payees.start()
        self.ready = self.payees.wait_for("ready", limits.PAYEES_READY_S_MAX)

        self.info = RigInfo(
            profile=profile_arg,
            seed=self.seed,
            currency=profile.currency,
            slots=self.slots,
            stream_host="127.0.0.1",
            stream_port=self.switch.stream_port,
            http_url=f"http://127.0.0.1:{http_port}" if self.http else "",
            admin_url=self.switch.admin_url,
            switch_pid=self.switch.pid,
            participant_ids={name: created[name]["participant_id"]
                             for name, _ in population_names},
            load=[LoadIdentity(slot=slot, participant=p.participant_id,
                               name=load_name(p.participant_id, slot),
                               participant_id=created[load_name(p.participant_id, slot)][
                                   "participant_id"],
                               api_key=created[load_name(p.participant_id, slot)]["api_key"])
                  for slot in range(self.slots) for p in profile.participants],
        )
        write_rig(self.rig_path, self.info)

    def _profile_argument(self, path: str) -> str:
        """A profile reference the payee process and locust workers can load: a name or
        path as given, or the Profile (maybe changed in code) written as JSON."""
        if isinstance(self.profile_source, str):
            return self.profile_source
        with open(path, "wb") as file:
            file.write(msgspec.json.encode(self.profile))
        return path

    # -- while running ---------------------------------------------------------------

    def set_callback_url(self, participant_id: int, url: str) -> None:
        """Where the switch POSTs this participant's HTTP callbacks."""
        assert self.switch is not None
        self.switch.request("PUT", f"/admin/participants/{participant_id}/callback-url",
                            {"callback_url": url})

    def switch_alive(self) -> bool:
        return self.switch is not None and self.switch.process.poll() is None

    # -- stop ------------------------------------------------------------------------

    def stop(self) -> None:
        if self.payees is not None:
            self.payees.stop()
            # The final line may already be on the queue (read before the process exited).
            while True:
                try:
                    record = self.payees.lines.get_nowait()
                except queue.Empty:
                    break
                if record is not None and record.get("type") == "final":
                    self.payees_final = record
            self.payees = None
        if self.switch is not None:
            self.switch.stop(limits.PROCESS_STOP_S_MAX)
            self.switch = None
        if self._own_work_dir and not self.keep_data:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def load_profile_ref(ref: str) -> Profile:
    """A profile by name, TOML path, or the JSON file a rig writes for a changed profile."""
    if ref.endswith(".json"):
        try:
            with open(ref, "rb") as file:
                return msgspec.json.decode(file.read(), type=Profile)
        except OSError as error:
            raise ProfileError(ref, f"cannot read it ({error.strerror or error})") from None
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise ProfileError(ref, str(error)) from None
    return load_profile(ref)


def population_of(info: RigInfo) -> Population:
    return Population.build(load_profile_ref(info.profile), info.seed)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.locust.rig",
        description="Keep a switch and its payee simulators up for locust (Ctrl-C stops).")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=1,
                        help="Payer identity sets: one per locust worker.")
    parser.add_argument("--out", default=RIG_FILE, help="Where to write the rig file.")
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args(argv)
    rig = Rig(args.profile, seed=args.seed, slots=args.slots, work_dir=args.work_dir,
              keep_data=True)
    stopping = threading.Event()
    # Both, explicitly: a rig started in the background of a script inherits SIGINT ignored.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        rig.start()
        write_rig(args.out, rig.info)
        print(f"rig up: stream 127.0.0.1:{rig.info.stream_port}  http {rig.info.http_url}  "
              f"admin {rig.info.admin_url}", flush=True)
        print(f"rig file: {os.path.abspath(args.out)} (PONTE_RIG={os.path.abspath(args.out)})",
              flush=True)
        print("Ctrl-C stops it.", flush=True)
        while not stopping.wait(1.0):
            if not rig.switch_alive():
                print(f"the switch exited; see {rig.data_dir}/switch.log", flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
