"""The fault-injection script runs and prints its table (a smoke test on its cheapest case: a full disk
during the decode-cache build, on a 3 MB tmpfs where the platform allows, else a simulated ENOSPC)."""

from __future__ import annotations

from experiments.benchmarks import faults


def test_faults_script_reports_the_full_disk_cache_case(tmp_path, capsys):
    assert faults.main(["--quick", "--only", "cache_full_disk", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| full disk during the decode-cache build")]
    assert len(rows) == 1, out
    fault, outcome, lost, data_lost, verdict = [c.strip() for c in rows[0].strip("|").split("|")]
    assert verdict == "GOOD" and outcome.startswith("rc 1") and "cache folder" in outcome
    assert data_lost.startswith("none (0 files left")
