"""Options and seeds for the deterministic simulation.

`pytest tests/sim` runs a fixed set of seeds (0 .. --seeds-1, default 500) plus a few random
ones (--random-seeds, default 3), printed in the header. `--seed N` replays one seed (run
`python -m pytest tests/sim -k replay --seed N`).

These options are registered here, so they exist when tests/sim is on the command line
(as in the commands above); a bare `pytest` from the root runs the defaults.
"""

from __future__ import annotations

import random

import pytest

FIXED_SEEDS_DEFAULT = 500
RANDOM_SEEDS_DEFAULT = 3
PURE_SEEDS = 25  # also run on the pure-Python ledger twin


def pytest_addoption(parser):
    group = parser.getgroup("ponte simulation")
    group.addoption("--seeds", type=int, default=FIXED_SEEDS_DEFAULT,
                    help="how many fixed seeds (0..N-1) the simulation runs")
    group.addoption("--random-seeds", type=int, default=RANDOM_SEEDS_DEFAULT,
                    help="how many random seeds to add (printed in the header)")
    group.addoption("--seed", type=int, default=None, help="replay this one seed (test_replay)")


def _option(config, name, default):
    try:
        return config.getoption(name)
    except ValueError:  # the option was not registered (tests/sim not an initial conftest)
        return default


def _random_seeds(config) -> list[int]:
    seeds = getattr(config, "_ponte_random_seeds", None)
    if seeds is None:
        count = _option(config, "--random-seeds", RANDOM_SEEDS_DEFAULT)
        seeds = [random.SystemRandom().randrange(10**6, 10**9) for _ in range(count)]
        config._ponte_random_seeds = seeds
    return seeds


def pytest_report_header(config):
    seeds = _random_seeds(config)
    return f"simulation: {_option(config, '--seeds', FIXED_SEEDS_DEFAULT)} fixed seeds; random seeds {seeds}"


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "sim_seed" in metafunc.fixturenames:
        fixed = list(range(_option(config, "--seeds", FIXED_SEEDS_DEFAULT)))
        seeds = fixed + _random_seeds(config)
        metafunc.parametrize("sim_seed", seeds, ids=[f"seed_{seed}" for seed in seeds])
    if "pure_sim_seed" in metafunc.fixturenames:
        seeds = list(range(PURE_SEEDS))
        metafunc.parametrize("pure_sim_seed", seeds, ids=[f"pure_seed_{seed}" for seed in seeds])


@pytest.fixture
def replay_seed(request):
    seed = _option(request.config, "--seed", None)
    assert seed is not None, "test_replay is deselected unless --seed is given"
    return seed


def pytest_collection_modifyitems(config, items):
    """Without --seed there is nothing to replay: deselect test_replay (rather than
    reporting a skip in every run, CI included)."""
    if _option(config, "--seed", None) is not None:
        return
    replay = [item for item in items if item.originalname == "test_replay"]
    if replay:
        config.hook.pytest_deselected(items=replay)
        items[:] = [item for item in items if item.originalname != "test_replay"]


def pytest_terminal_summary(terminalreporter, config):
    seeds = getattr(config, "_ponte_random_seeds", None)
    if seeds:
        terminalreporter.write_line(
            f"simulation random seeds this run: {seeds} "
            f"(replay one: python -m pytest tests/sim -k replay --seed N)")
