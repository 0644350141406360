"""Login rate limiting: failed logins per username and per client address in a sliding window.

Once a key has `failures_max` failures within the window, every login for it is refused
with LOGIN_RATE_LIMITED (even with the right password, so guessing cannot go on) until the
oldest failure leaves the window; the answer says when. A login *reserves* its attempt as a
failure on both keys before its password is hashed, and gets it back only if the password
was right: so however many logins arrive at once, no more than `failures_max` guesses per
key ever reach the hash, and a flood costs a dictionary lookup, not argon2. State is in
memory and bounded (`keys_max`, the stalest key is forgotten first); it does no I/O and
reads no clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from switch.admin import limits

NS_PER_S = limits.NS_PER_S


class FailureWindow:
    """Failures per key within `window_s`, at most `failures_max` remembered per key."""

    def __init__(self, failures_max: int, window_s: int, keys_max: int):
        assert failures_max >= 1
        assert window_s >= 1
        assert keys_max >= 1
        self.failures_max = failures_max
        self.window_ns = window_s * NS_PER_S
        self.keys_max = keys_max
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()

    def _live(self, key: str, now_ns: int) -> deque[int] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now_ns - self.window_ns:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after_s(self, key: str, now_ns: int) -> int:
        """0 when a login may be tried now, else whole seconds until one may."""
        failures = self._live(key, now_ns)
        if failures is None or len(failures) < self.failures_max:
            return 0
        wait_ns = failures[0] + self.window_ns - now_ns
        return max(1, -(-wait_ns // NS_PER_S))

    def unfail(self, key: str, at_ns: int) -> None:
        """Take back one failure recorded at `at_ns` (a reserved attempt that succeeded)."""
        failures = self._failures.get(key)
        if failures is None:
            return
        try:
            failures.remove(at_ns)
        except ValueError:
            return  # already left the window
        if not failures:
            del self._failures[key]

    def fail(self, key: str, now_ns: int) -> None:
        failures = self._live(key, now_ns)
        if failures is None:
            failures = deque(maxlen=self.failures_max)
            self._failures[key] = failures
            if len(self._failures) > self.keys_max:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now_ns)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


class LoginLimiter:
    """Both windows. A success clears the username's failures, not the address's: one
    account's owner logging in must not reset an attacker's budget on the address (it only
    returns the attempt it reserved)."""

    def __init__(self, user_failures_max: int = limits.LOGIN_FAILURES_PER_USER_MAX,
                 address_failures_max: int = limits.LOGIN_FAILURES_PER_ADDRESS_MAX,
                 window_s: int = limits.LOGIN_WINDOW_S,
                 keys_max: int = limits.LOGIN_LIMITER_KEYS_MAX):
        self.users = FailureWindow(user_failures_max, window_s, keys_max)
        self.addresses = FailureWindow(address_failures_max, window_s, keys_max)

    def retry_after_s(self, username: str, address: str, now_ns: int) -> int:
        return max(self.users.retry_after_s(username, now_ns),
                   self.addresses.retry_after_s(address, now_ns))

    def reserve(self, username: str, address: str, now_ns: int) -> int:
        """Before hashing: 0, with one attempt counted as a failure on both keys, when a
        login may be tried now; else whole seconds until one may (nothing counted). The
        check and the count happen in one step, so concurrent logins cannot all pass the
        check before any of them is counted."""
        wait_s = self.retry_after_s(username, address, now_ns)
        if wait_s:
            return wait_s
        self.users.fail(username, now_ns)
        self.addresses.fail(address, now_ns)
        return 0

    def refund(self, username: str, address: str, reserved_ns: int) -> None:
        """The reserved attempt was never tried (no hash ran): give it back on both keys."""
        self.users.unfail(username, reserved_ns)
        self.addresses.unfail(address, reserved_ns)

    def succeeded(self, username: str, address: str, reserved_ns: int) -> None:
        """The password was right: the username's failures are cleared, the address gets its
        reserved attempt back (its other failures stay)."""
        self.users.clear(username)
        self.addresses.unfail(address, reserved_ns)
