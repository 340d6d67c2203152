"""ci_skips.py on a scratch suite: under OWRT_VPN_CI=1 every kind of skip fails with its reason;
without it the same suite skips (and xfail stays xfail either way)."""

from __future__ import annotations

import pytest

from ci_skips import ENV, MODULE_ITEM

SUITE = {
    "conftest": """
import pytest

@pytest.fixture(scope="module")
def namespaces():
    pytest.skip("needs root (network namespaces)")
""",
    "test_skips": """
import pytest

def test_in_body():
    pytest.skip("frobctl is not installed (see .ci/run)")

@pytest.mark.skipif(True, reason="diffoscope is not installed (see .ci/run)")
def test_skipif_mark():
    pass

@pytest.mark.skip(reason="podman is not installed (see .ci/run)")
def test_skip_mark():
    pass

def test_in_fixture(namespaces):
    pass

def test_in_fixture_again(namespaces):
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_xfail():
    assert False

def test_passes():
    pass
""",
    "test_module_skip": """
import pytest

pytest.skip("nft is not installed (see .ci/run)", allow_module_level=True)

def test_never_collected():
    pass
""",
    "test_importorskip": """
import pytest

pytest.importorskip("no_such_module_owrt_vpn_test")

def test_never_collected():
    pass
""",
}

REASONS = [
    "frobctl is not installed",
    "diffoscope is not installed",
    "podman is not installed",
    "needs root (network namespaces)",
    "nft is not installed",
    "could not import 'no_such_module_owrt_vpn_test'",
]


def run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    pytester.makepyfile(**SUITE)
    monkeypatch.setenv("COLUMNS", "250")  # summary lines are not cut short
    return pytester.runpytest("-p", "ci_skips", "-ra", "-p", "no:cacheprovider")


def test_in_ci_every_skip_fails_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "1")
    result = run_suite(pytester, monkeypatch)
    # body and module-level skips: failed tests; skips in setup (marks, fixtures): errors
    result.assert_outcomes(passed=1, failed=3, errors=4, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.no_fnmatch_line("SKIPPED*")
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_skips.py::test_in_body - Failed: frobctl is not installed*",
            "ERROR test_skips.py::test_skipif_mark - Failed: diffoscope is not installed*",
            "ERROR test_skips.py::test_skip_mark - Failed: podman is not installed*",
            "ERROR test_skips.py::test_in_fixture - Failed: needs root (network namespaces)*",
            "ERROR test_skips.py::test_in_fixture_again - Failed: needs root (network names*",
            f"FAILED test_module_skip.py::{MODULE_ITEM} - Failed: nft is not installed*",
            f"FAILED test_importorskip.py::{MODULE_ITEM} - Failed: could not import*",
            "XFAIL test_skips.py::test_xfail - a known bug",
        ]
    )
    # the full message (not cut to the terminal's width) names the reason and the rule
    for reason in REASONS:
        result.stdout.fnmatch_lines([f"{reason}* -- a skip is a failure when {ENV}=1*"])


@pytest.mark.parametrize("value", [None, "", "0"])
def test_outside_ci_skips_stay_skips(
    value: str | None, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    result = run_suite(pytester, monkeypatch)
    result.assert_outcomes(passed=1, skipped=7, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    # -ra lists every skip with its reason
    for reason in REASONS:
        result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] *: {reason}*"])
