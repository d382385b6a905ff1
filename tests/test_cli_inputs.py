"""The installed ``dposer`` command refuses bad flags and bad numbers with one line and exit 2,
before any output is written; results with NaN/Inf are refused instead of written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from prior_helpers import DATA, OFFICIAL_CKPT, assert_one_line_error, run, small_random_prior

CKPT = str(OFFICIAL_CKPT)
FID = str(DATA / "pose_fid_statistics.npz")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Tiny real input files and bad variants, by name."""
    folder = tmp_path_factory.mktemp("inputs")
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        poses = f["pose_body"][:4]
    with np.load(DATA / "gesture_clip.npz", allow_pickle=False) as f:
        clip = {k: f[k][:12] for k in f.files}
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        split = {"train": f["train"][:64], "val": f["val"][:8]}
    with np.load(FID, allow_pickle=False) as f:
        fid = {k: f[k] for k in f.files}
    files = {
        "poses": {"pose_body": poses},
        "poses_timedelta": {"pose_body": poses.astype("timedelta64[s]")},
        "poses_1e300": {"pose_body": np.full((4, 63), 1e300)},  # finite in float64, Inf in float32
        "clip": clip,
        "clip_timedelta": clip | {"pose_body": clip["pose_body"].astype("timedelta64[s]")},
        "clip_1e300": clip | {"pose_body": np.full((12, 63), 1e300)},
        "split": split,
        "fid_string_mu": fid | {"mu": np.array(["0.1"] * 63)},
    }
    paths = {}
    for name, arrays in files.items():
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], **arrays)
    paths["a_file"] = folder / "a_file"
    paths["a_file"].write_text("not a folder\n")
    return paths


def _last_pt(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True)
    if kind == "truncated":
        path.write_bytes(OFFICIAL_CKPT.read_bytes()[:3000])
    else:
        torch.save([1, 2, 3], path)


TRAIN = ("--steps", 2, "--batch-size", 8, "--hidden", 32, "--embed", 16, "--log-every", 1, "--save-every", 1)

# (subcommand and flags with {placeholders}, fragments of the one error line)
CASES = {
    "generate --steps 0": (["generate", "--steps", 0], ["--steps", "(got 0)"]),
    "generate --steps -3": (["generate", "--steps", -3], ["--steps", "(got -3)"]),
    "generate --num 1e9": (["generate", "--num", 1_000_000_000], ["--num", "100000", "(got 1000000000)"]),
    "generate --seed 1e24": (["generate", "--seed", 10**24], ["--seed", str(10**24)]),
    "generate --trajectory too big": (["generate", "--trajectory", "--num", 10000], ["--trajectory", "4000000"]),
    "generate --out folder": (["generate", "--steps", 2, "--out", "{tmp}"], ["--out", "folder"]),
    "generate --out under a file": (["generate", "--steps", 2, "--out", "{a_file}/g.npz"], ["--out", "not a folder"]),
    "complete scoresde --steps 0": (["complete", "--poses", "{poses}", "--part", "legs", "--solver", "scoresde",
                                     "--steps", 0], ["--steps", "(got 0)"]),
    "complete scoresde --steps -3": (["complete", "--poses", "{poses}", "--part", "legs", "--solver", "scoresde",
                                      "--steps", -3], ["--steps", "(got -3)"]),
    "complete --hypotheses 1e9": (["complete", "--poses", "{poses}", "--part", "legs", "--hypotheses",
                                   1_000_000_000], ["--hypotheses", "1000", "(got 1000000000)"]),
    "complete timedelta poses": (["complete", "--poses", "{poses_timedelta}", "--part", "legs"],
                                 ["poses_timedelta.npz", "timedelta64"]),
    "complete 1e300 poses": (["complete", "--poses", "{poses_1e300}", "--part", "legs"],
                             ["poses_1e300.npz", "1e+300", "float32"]),
    "eval --num-poses 0": (["eval", "--data", "{split}", "--fid-stats", FID, "--baselines-only", "--num-poses", 0],
                           ["--num-poses", "(got 0)"]),
    "eval --num-poses -1": (["eval", "--data", "{split}", "--fid-stats", FID, "--baselines-only", "--num-poses", -1],
                            ["--num-poses", "(got -1)"]),
    "eval string mu": (["eval", "--data", "{split}", "--fid-stats", "{fid_string_mu}", "--baselines-only"],
                       ["fid_string_mu.npz", "'mu'", "dtype"]),
    "eval --num-samples 2": (["eval", "--data", "{split}", "--fid-stats", FID, "--num-samples", 2],
                             ["--num-samples", "(got 2)"]),
    "eval --hypotheses over the training poses": (["eval", "--data", "{split}", "--fid-stats", FID,
                                                   "--baselines-only", "--hypotheses", 65], ["--hypotheses", "64"]),
    "eval too few poses to generate": (["eval", "--data", "{split}", "--fid-stats", FID, "--num-poses", 3],
                                       ["split.npz", "at least 4"]),
    "train truncated last.pt": (["train", "--data", "{split}", "--run-dir", "{tmp}/run", *TRAIN],
                                ["last.pt", "cannot be read"]),
    "train list last.pt": (["train", "--data", "{split}", "--run-dir", "{tmp}/run", *TRAIN],
                           ["last.pt", "not a dposer train resume state", "list"]),
    "train --batch-size 0": (["train", "--data", "{split}", "--run-dir", "{out}/run", *TRAIN, "--batch-size", 0],
                             ["--batch-size", "(got 0)"]),
    "train --hidden 33": (["train", "--data", "{split}", "--run-dir", "{out}/run", *TRAIN, "--hidden", 33],
                          ["--hidden", "33", "32"]),
    "train --log-every 0": (["train", "--data", "{split}", "--run-dir", "{out}/run", *TRAIN, "--log-every", 0],
                            ["--log-every", "(got 0)"]),
    "train --lr nan": (["train", "--data", "{split}", "--run-dir", "{out}/run", *TRAIN, "--lr", "nan"],
                       ["--lr", "(got nan)"]),
    "train --run-dir is a file": (["train", "--data", "{split}", "--run-dir", "{a_file}", *TRAIN],
                                  ["--run-dir", "a_file", "is a file"]),
    "denoise --noise-std 1e30": (["denoise", "--clip", "{clip}", "--noise-std", 1e30], ["--noise-std", "1e+30"]),
    "denoise --window 0": (["denoise", "--clip", "{clip}", "--window", 0], ["--window", "(got 0)"]),
    "denoise --overlap 300": (["denoise", "--clip", "{clip}", "--overlap", 300], ["--overlap", "(got 300)"]),
    "denoise --seed 2^64-1": (["denoise", "--clip", "{clip}", "--seed", 2**64 - 1], ["--seed", str(2**64 - 1)]),
    "denoise --metrics under a file": (["denoise", "--clip", "{clip}", "--metrics", "{a_file}/m.json"],
                                       ["--metrics", "a_file/m.json", "not a folder"]),
    "denoise --metrics unwritable": (["denoise", "--clip", "{clip}", "--metrics", "/proc/dposer-test/m.json"],
                                     ["--metrics", "/proc/dposer-test/m.json", "cannot be written"]),
    "denoise --metrics is --out": (["denoise", "--clip", "{clip}", "--metrics", "{out}/result.npz"],
                                   ["--out", "--metrics", "same file"]),
    "denoise timedelta clip": (["denoise", "--clip", "{clip_timedelta}"], ["clip_timedelta.npz", "timedelta64"]),
    "denoise 1e300 clip": (["denoise", "--clip", "{clip_1e300}"], ["clip_1e300.npz", "float32"]),
}
OUT_NAME = {"generate": "result.npz", "complete": "result.npz", "denoise": "result.npz", "eval": "eval.json"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, inputs, case):
    if "unwritable" in case and not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc: a folder even root cannot create files in")
    argv, fragments = CASES[case]
    out_dir = tmp_path / "out"  # every output goes here; it must still not exist afterwards
    names = {k: str(v) for k, v in inputs.items()} | {"tmp": str(tmp_path), "out": str(out_dir)}
    args = [a.format(**names) if isinstance(a, str) else a for a in argv]
    run_dir = tmp_path / "run"
    if case.startswith("train") and "last.pt" in case:
        _last_pt(case.split()[1], run_dir / "last.pt")
    before = sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else None
    if "--out" not in argv and argv[0] in OUT_NAME:
        args += ["--out", out_dir / OUT_NAME[argv[0]]]
    proc = run(*args[:1], "--ckpt", CKPT, *args[1:], ok=False)
    assert_one_line_error(proc, *fragments)
    assert "Traceback" not in proc.stderr
    assert not out_dir.exists(), sorted(out_dir.rglob("*"))
    if before is not None:  # an existing run folder is left as it was
        assert sorted(p.name for p in run_dir.iterdir()) == before


# -- results that are not numbers ----------------------------------------------------------------


def assert_error_after_progress(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, no traceback, and the last line (after progress bars on stderr) the one error line."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("dposer: error: "), proc.stderr
    assert sum("dposer: error" in line for line in lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def broken_ckpt(tmp_path_factory) -> Path:
    """A prior with finite weights that loads (its network is finite at the times the loader probes)
    but overflows float32 at every other time (noise scale 1e-30 under ``scale_by_sigma``): every
    sampler and solver ends in Inf/NaN."""
    import prior.checkpoint

    prior_ = small_random_prior(hidden=32)
    assert prior_.net.config.scale_by_sigma
    probed = (torch.tensor(getattr(prior.checkpoint, "PROBE_TIMES", (0.01, 0.5, 1.0))) * 999).long()
    with torch.no_grad():
        prior_.net.post_dense.bias[:] = 1e10
        sigmas = torch.full_like(prior_.net.sigmas, 1e-30)
        sigmas[probed] = 1.0
        prior_.net.sigmas.copy_(sigmas)
    return prior.checkpoint.save_prior(prior_, tmp_path_factory.mktemp("ckpt") / "overflowing.safetensors")


@pytest.mark.parametrize("command", ["generate", "generate --trajectory", "complete", "complete scoresde",
                                     "complete dposer", "denoise", "eval"])
def test_non_finite_results_are_refused_not_written(tmp_path, inputs, broken_ckpt, command):
    out_dir = tmp_path / "out"
    out = out_dir / "result.npz"
    args = {
        "generate": ["generate", "--num", 5, "--steps", 3, "--out", out],
        "generate --trajectory": ["generate", "--num", 5, "--steps", 3, "--trajectory", "--out", out],
        "complete": ["complete", "--poses", inputs["poses"], "--part", "legs", "--hypotheses", 2, "--out", out],
        "complete scoresde": ["complete", "--poses", inputs["poses"], "--part", "legs", "--hypotheses", 2,
                              "--solver", "scoresde", "--steps", 3, "--out", out],
        "complete dposer": ["complete", "--poses", inputs["poses"], "--part", "legs", "--hypotheses", 2,
                            "--solver", "dposer", "--out", out],
        "denoise": ["denoise", "--clip", inputs["clip"], "--seed", 0, "--out", out, "--metrics", out_dir / "m.json"],
        "eval": ["eval", "--data", inputs["split"], "--fid-stats", FID, "--num-poses", 5, "--num-samples", 5,
                 "--steps", 2, "--hypotheses", 2, "--parts", "legs", "--solvers", "dposer",
                 "--out", out_dir / "e.json"],
    }[command]
    proc = run(args[0], "--ckpt", broken_ckpt, *args[1:], ok=False)
    counted = {"generate": "5 of 5 samples", "complete": "4 of 4 poses", "denoise": "12 of 12 frames",
               "eval": "5 of 5 samples"}[command.split()[0]]
    assert_error_after_progress(proc, str(broken_ckpt), "NaN/Inf", counted, "nothing was written")
    assert not out_dir.exists()


def test_denoise_writes_out_and_metrics_together(tmp_path, inputs):
    out, metrics = tmp_path / "d.npz", tmp_path / "d.json"
    run("denoise", "--ckpt", CKPT, "--clip", inputs["clip"], "--seed", 0, "--window", 12, "--overlap", 0,
        "--out", out, "--metrics", metrics)
    with np.load(out, allow_pickle=False) as f:
        assert f["poses"].shape == (12, 165) and np.isfinite(f["poses"]).all()
    assert "mpjpe_out_mm" in metrics.read_text()
