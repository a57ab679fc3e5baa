"""A failed e2e test's report carries the tail of every process's log of the module's
environment, since those processes run outside the test process."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from deploy.local.environment import Environment


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    env = getattr(item, "funcargs", {}).get("env")
    if report.when == "call" and report.failed and isinstance(env, Environment):
        parts = []
        for name in env.names():
            state = "running" if env.running(name) else "stopped"
            parts.append(f"===== {name} ({state}) =====\n{env.log(name, 25)}")
        report.sections.append(("environment logs", "\n".join(parts)))
