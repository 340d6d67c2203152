"""The benchmark suite's entry point runs (not the benchmarks themselves: `make bench`).

Only the footprint section runs here: it needs no mirror and takes a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "run.py"


def test_help_names_every_section() -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--help"], capture_output=True, text=True, check=True
    )
    assert "--only NAMES" in proc.stdout
    for section in ("footprint", "overhead", "noop", "fleet", "pki"):
        assert section in proc.stdout


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--only", "speed", "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "unknown section(s) ['speed']" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_footprint_section_writes_results_and_table(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--only", "footprint", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    doc = json.loads(out.read_text())
    fp = doc["benchmarks"]["footprint"]
    assert len(fp["per_auth_combination"]) == 15  # every non-empty set of the 4 auth methods
    # 12 plugins (vici); ipsec.conf: stroke and attr (DNS) instead of vici.
    assert fp["per_auth_combination"]["pubkey"] == {"swanctl": 12, "ipsec": 13}
    assert fp["certificate_plus_eap_mschapv2"] <= 20
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["python"]
    row = next(r for r in doc["summary"] if r["name"].startswith("5 plugin packages"))
    assert row["ok"] is True and row["value"] == fp["certificate_plus_eap_mschapv2"]
    assert "5 plugin packages, cert + EAP-MSCHAPv2" in proc.stdout
    assert f"results: {out}" in proc.stdout


def _pki_results(users: int) -> dict:
    side = {"users": users, "wall": 2.5, "per_user_ms": 41.7, "scaled_to_1000_users_wall": 41.7}
    ecdsa = {
        **side,
        "guide_per_user_over_ours": 9.0,
        "firmware": {"overhead": 0.4, "noop_wall": 0.2},
    }
    return {"pki": {"ecdsa": ecdsa, "rsa3072": {**side, "guide_per_user_over_ours": 3.0}}}


def test_quick_summary_reports_what_it_measured_unscaled() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import run
    finally:
        sys.path.remove(str(REPO / "bench"))
    quick = run.summary(_pki_results(60), quick=True)
    first = quick[0]
    assert first["name"] == "3 60 users ECDSA: pki + bundles (quick: not scaled)"
    assert first["value"] == 2.5 and first["ok"] is None  # no 1,000-user target judged
    assert not any("scaled from" in r["name"] for r in quick)
    full = run.summary(_pki_results(60))
    assert full[0]["value"] == 41.7 and full[0]["ok"] is False  # a full run scales and judges
