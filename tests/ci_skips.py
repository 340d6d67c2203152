"""With ``OWRT_VPN_CI=1`` (set by .ci/run) a skip is a failure naming what is missing.

Our tests skip when this machine lacks a tool or a privilege (root, nft,
podman, diffoscope, ...): fine on a developer's laptop, where ``-ra`` lists
every skip with its reason, but in CI such a skip would hide a broken setup.
So under ``OWRT_VPN_CI=1``:

- a skip while a test runs (``pytest.skip()`` in the test or in a fixture,
  a ``skipif``/``skip`` mark) fails that phase with the skip's reason (a skip
  in setup shows as an ERROR, in the test body as a FAILED test);
- a module that skips while it is collected (``pytest.skip(...,
  allow_module_level=True)``, ``pytest.importorskip``) becomes one failing
  test, ``<module>::<skipped module>``, with the reason; the other modules
  still run;
- xfail is not a skip and is left alone.

Loaded by tests/conftest.py (``pytest_plugins``); tests/test_ci_skips.py
proves it on a scratch test suite.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ENV = "OWRT_VPN_CI"
MODULE_ITEM = "<skipped module>"


def in_ci() -> bool:
    """Whether skips are failures in this run."""
    return os.environ.get(ENV, "") == "1"


def skip_reason(longrepr: object) -> str:
    """The reason of a skipped report (its longrepr is ``(path, line, "Skipped: reason")``)."""
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ").strip() or "(no reason given)"


def failure_message(reason: str) -> str:
    """What a skip turned failure says: the reason (the missing tool or privilege) first."""
    return f"{reason} -- a skip is a failure when {ENV}=1 (see .ci/run)"


def _no_skips() -> Generator[None, object, object]:
    try:
        return (yield)
    except pytest.skip.Exception as exc:
        if not in_ci():
            raise
        reason = exc.msg or "(no reason given)"
        raise pytest.fail.Exception(failure_message(reason), pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    """Skips in fixtures and from ``skip``/``skipif`` marks."""
    return (yield from _no_skips())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """``pytest.skip()`` in the test itself."""
    return (yield from _no_skips())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    """``pytest.skip()`` while a fixture is torn down."""
    return (yield from _no_skips())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Any other skipped report (not an xfail) fails too, whoever made it."""
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = failure_message(skip_reason(report.longrepr))
    return report


class SkippedModule(pytest.Item):
    """Stands for a module that skipped itself while collected: fails with its reason."""

    def __init__(self, *, reason: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.reason = reason

    def runtest(self) -> None:
        raise pytest.fail.Exception(failure_message(self.reason), pytrace=False)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.path, None, f"{self.name}: {self.reason}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A collector (module) that skipped: one failing test instead, the run goes on."""
    report = yield
    if not (in_ci() and report.skipped):
        return report
    reason = skip_reason(report.longrepr)
    item = SkippedModule.from_parent(collector, name=MODULE_ITEM, reason=reason)
    return pytest.CollectReport(collector.nodeid, "passed", None, [item])
