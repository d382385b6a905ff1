"""Metrics and `dposer eval` on real AMASS poses."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from prior.metrics import apd_m, frechet_distance, gaussian_stats, mpjpe_mm, prdc

from prior_helpers import DATA, OFFICIAL_CKPT


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 4))
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(a)) == pytest.approx(0.0, abs=1e-9)
    # N(0, I) vs N(m, 4 I) in 4-d: |m|^2 + 4 + 16 - 2 * 4 * 2
    m = np.full(4, 0.5)
    assert frechet_distance(np.zeros(4), np.eye(4), m, 4 * np.eye(4)) == pytest.approx(1.0 + 4.0, rel=1e-9)


def test_apd_and_mpjpe_known_values():
    joints = np.zeros((3, 2, 3))
    joints[1, :, 0] = 1.0  # sample 1 is 1 m away from sample 0 on every joint
    joints[2, :, 0] = 3.0
    # ordered pairs: (0,1)=1, (0,2)=3, (1,2)=2, each twice -> mean 2
    assert apd_m(joints) == pytest.approx(2.0)
    assert mpjpe_mm(joints[1], joints[0]) == pytest.approx(1000.0)


def test_prdc_separates_matching_from_shifted_sets():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 6))
    same = rng.normal(size=(400, 6))
    far = rng.normal(size=(400, 6)) + 4.0
    good, bad = prdc(real, same), prdc(real, far)
    assert good["precision"] > 0.8 and good["recall"] > 0.8 and good["coverage"] > 0.8
    assert bad["precision"] < 0.05 and bad["coverage"] < 0.05


def test_dposer_eval_writes_json_and_table(tmp_path):
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [shutil.which("dposer"), "eval", "--ckpt", str(OFFICIAL_CKPT), "--data", str(DATA / "amass_body_poses.npz"),
         "--fid-stats", str(DATA / "pose_fid_statistics.npz"), "--num-poses", "12", "--num-samples", "12",
         "--steps", "20", "--hypotheses", "3", "--parts", "left_leg", "arms", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["num_poses"] == 12 and report["checkpoint"]["format"] == "dposer-official"
    assert set(report["completion"]) == {"left_leg", "arms"}
    row = report["completion"]["left_leg"]
    for solver in ("dps", "dposer"):  # both solvers by default; best of 3 includes hypothesis 0
        assert np.isfinite(row[f"{solver}_single_mm"]) and row[f"{solver}_best3_mm"] <= row[f"{solver}_single_mm"]
    assert row["nn_best3_mm"] <= row["nn1_mm"]
    assert 0 < report["generation"]["apd_real_m"] and np.isfinite(report["generation"]["fid"])
    assert "| left_leg |" in proc.stdout and "APD" in proc.stdout and "DPS best-of-3" in proc.stdout


def test_eval_rejects_bad_stats_file(tmp_path):
    bad = tmp_path / "stats.npz"
    np.savez(bad, mu=np.zeros(62), sigma=np.eye(63))
    proc = subprocess.run(
        [shutil.which("dposer"), "eval", "--baselines-only", "--data", str(DATA / "amass_body_poses.npz"),
         "--fid-stats", str(bad), "--out", str(tmp_path / "e.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and str(bad) in proc.stderr and "'mu'" in proc.stderr
    assert not (tmp_path / "e.json").exists()
