"""Smoke test of benchmarks/diag_mol_query_sets.py on the shared MovieLens (one short epoch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "diag_mol_query_sets.py"


@pytest.mark.data  # about 15 s: one short epoch of two small models
def test_query_set_diagnostic_writes_both_query_sets_and_the_shift(data_dir, tmp_path):
    out = tmp_path / "diag.json"
    cmd = [sys.executable, str(SCRIPT), "--seeds", "0", "--data", str(data_dir), "--output", str(out),
           "--model", "one", "dot", "epochs=1", "num_negatives=64",
           "--model", "two", "dot", "epochs=1", "num_negatives=64", "num_interests=2"]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["reference"] == "one" and set(report["models"]) == {"one", "two"}
    for entry in report["models"].values():
        for split in ("valid", "test"):
            assert 0.0 < entry[split]["hr@10"]["mean"] <= entry[split]["hr@50"]["mean"] < 1.0
    two = report["models"]["two"]
    for metric in ("hr@10", "hr@50", "ndcg@10", "mrr"):
        shift = two["shift_test_minus_valid_vs_one"][metric]
        valid, test = (two["paired_minus_one"][metric][split] for split in ("valid", "test"))
        assert shift["n"] == valid["n"] == test["n"] == 943
        assert shift["mean"] == pytest.approx(test["mean"] - valid["mean"], abs=1e-9)  # same users in both sets
        assert shift["se"] > 0
        for split, paired in (("valid", valid), ("test", test)):  # paired mean = difference of the seed means
            diff = two[split][metric]["mean"] - report["models"]["one"][split][metric]["mean"]
            assert paired["mean"] == pytest.approx(diff, abs=1e-9)
    assert two["config"]["recipe"]["num_interests"] == 2 and two["config"]["train"]["epochs"] == 1
    assert "shift" in run.stdout


def test_query_set_diagnostic_rejects_a_bad_model_spec(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--model", "x", "cosine", "--output", str(tmp_path / "o.json")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "'dot' or 'mol'" in run.stderr
    assert not (tmp_path / "o.json").exists()
    run = subprocess.run([sys.executable, str(SCRIPT), "--model", "x", "dot", "no_such_option=1"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no_such_option" in run.stderr
