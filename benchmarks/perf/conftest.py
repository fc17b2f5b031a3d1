"""pytest options for the performance suite: machine description and the opt-in end-to-end run."""

from __future__ import annotations

import pytest

from benchmarks.perf import workloads


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--perf-e2e",
        action="store_true",
        default=False,
        help="also time the default `python -m benchmarks.compare` end to end (several minutes)",
    )


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["multilivi"] = workloads.machine()


@pytest.fixture
def perf_e2e(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--perf-e2e"))
