"""Training: a few real steps on AMASS poses, exact resume, and DDP with 2 gloo processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from prior import InputError, load_prior
from prior.train import TrainConfig, TrainData, load_training_data, train

from prior_helpers import DATA

TINY = dict(hidden=64, embed=32, batch_size=64, warmup=5, log_every=5, val_every=10, save_every=10)


@pytest.fixture(scope="module")
def amass() -> TrainData:
    data = load_training_data(DATA / "amass_body_poses.npz")
    assert data.train.shape == (8498, 63) and data.val.shape == (500, 63)
    return data


def test_a_few_steps_write_a_self_contained_prior_and_a_loss_log(amass, tmp_path):
    out = train(amass, tmp_path / "run", TrainConfig(steps=20, **TINY), progress=False)
    prior = load_prior(out, device="cpu")
    assert prior.info["steps"] == 20 and prior.info["num_train_poses"] == 8498
    assert prior.info["data"]["split"] == "train" and prior.info["recipe"]["hidden"] == 64
    assert np.allclose(prior.mean.numpy(), amass.train.mean(0), atol=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "run" / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert "val_loss" in rows[1] and all(np.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]  # it learns something even in 20 steps


def test_resume_continues_exactly(amass, tmp_path):
    full = train(amass, tmp_path / "full", TrainConfig(steps=20, **TINY), progress=False)
    train(amass, tmp_path / "split", TrainConfig(steps=10, **TINY), progress=False)
    resumed = train(amass, tmp_path / "split", TrainConfig(steps=20, **TINY), progress=False)
    a = load_prior(full, device="cpu").net.state_dict()
    b = load_prior(resumed, device="cpu").net.state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_resume_may_change_dropout_and_the_file_records_both_phases(amass, tmp_path):
    train(amass, tmp_path / "run", TrainConfig(steps=10, **TINY), progress=False)
    out = train(amass, tmp_path / "run", TrainConfig(steps=20, **{**TINY, "dropout": 0.0, "lr": 1e-4}), progress=False)
    prior = load_prior(out, device="cpu")  # the file says dropout 0, the weights are the same shape
    assert prior.info["steps"] == 20 and prior.info["recipe"]["dropout"] == 0.0
    assert [(p["from_step"], p["recipe"]["dropout"], p["recipe"]["lr"]) for p in prior.info["phases"]] == [
        (0, 0.1, 2e-4), (10, 0.0, 1e-4)]
    with pytest.raises(InputError, match="another network config"):  # width may not change
        train(amass, tmp_path / "run", TrainConfig(steps=30, **{**TINY, "hidden": 96}), progress=False)


def test_cli_train_and_ddp_with_two_gloo_processes(tmp_path):
    torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun, "--standalone", "--nproc-per-node", "2", "-m", "prior.cli", "train",
        "--data", str(DATA / "amass_body_poses.npz"), "--run-dir", str(tmp_path / "ddp"), "--out", str(out),
        "--steps", "6", "--hidden", "64", "--embed", "32", "--batch-size", "32", "--warmup", "2",
        "--log-every", "2", "--val-every", "2", "--device", "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prior = load_prior(out, device="cpu")
    assert prior.info["world_size"] == 2 and prior.info["steps"] == 6


def test_bad_training_data_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, train=np.zeros((10, 60)))
    with pytest.raises(InputError, match="'train' has shape"):
        load_training_data(bad)




def test_a_diverging_run_stops_with_one_error_and_writes_no_prior(amass, tmp_path):
    # Training data the library accepts as given (the CLI's loader refuses it): float32-limit poses
    # make the normaliser Inf, the batches NaN and the first loss NaN.
    bad = TrainData(np.full((32, 63), 3e38, np.float32), None)
    run_dir = tmp_path / "run"
    with pytest.raises(InputError, match="diverged at step 1: the loss is nan"):
        train(bad, run_dir, TrainConfig(steps=5, **TINY), progress=False)
    assert not (run_dir / "prior.safetensors").exists() and not (run_dir / "last.pt").exists()
