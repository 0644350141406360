"""Identity tokens, the secret wrapper, and the sans-I/O promise of switch/directory."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from directory_helpers import SECRET
from switch.directory import identity
from switch.directory.config import Secret


def test_token_is_hmac_of_the_normalised_id_under_the_secret():
    secret = Secret(SECRET)
    token = identity.identity_token(secret, "BR:52998224725")
    assert len(token) == 32
    assert token == identity.identity_token(Secret(SECRET), "BR:52998224725")
    assert token != identity.identity_token(Secret(SECRET + b"x"), "BR:52998224725")
    assert token != identity.identity_token(secret, "BR:52998224726")
    assert b"52998224725" not in token and "52998224725" not in token.hex()


def test_secret_never_prints_and_is_not_picklable():
    secret = Secret(SECRET)
    assert SECRET.decode() not in repr(secret)
    assert SECRET.decode() not in str(secret)
    assert SECRET.decode() not in f"{secret}"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(ValueError):
        Secret(b"too short")


def test_derived_keys_are_64_bit_signed():
    token = identity.identity_token(Secret(SECRET), "BR:52998224725")
    for key in (identity.owner_key(token), identity.account_key("bank-a", "acc-1"),
                identity.alias_lock_key(1, "+5511987654321")):
        assert -(2**63) <= key < 2**63
    assert identity.account_key("bank-a", "acc-1") != identity.account_key("bank-a", "acc-2")


def test_user_bucket_keys_hide_the_user_id():
    bucket_secret = identity.bucket_secret(Secret(SECRET))
    key = identity.user_bucket_key(bucket_secret, "bank-a", "52998224725")
    assert len(key) == 16
    assert b"52998224725" not in key
    assert key != identity.user_bucket_key(bucket_secret, "bank-b", "52998224725")


def test_directory_rules_import_nothing_that_does_io():
    code = (
        "import sys\n"
        "import switch.directory.service, switch.directory.cache, switch.directory.buckets\n"
        "import switch.directory.claims, switch.directory.mapper, switch.directory.rules\n"
        "bad = [m for m in ('socket', 'asyncio', 'asyncpg', 'redis', 'sqlite3', 'ssl',\n"
        "                   'selectors', 'urllib.request', 'http.client') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""
