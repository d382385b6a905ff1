"""The installed ``dposer`` command refuses bad flags and bad numbers with one line and exit 2,
before any output is written; results with NaN/Inf are refused instead of written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from prior_helpers import DATA, DPOSER, OFFICIAL_CKPT, assert_one_line_error, run, small_random_prior

CKPT = str(OFFICIAL_CKPT)
FID = str(DATA / "pose_fid_statistics.npz")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Tiny real input files and bad variants, by name."""
    from bounded_load import npy_header

    folder = tmp_path_factory.mktemp("inputs")
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        poses = f["pose_body"][:4]
    with np.load(DATA / "gesture_clip.npz", allow_pickle=False) as f:
        clip = {k: f[k][:12] for k in f.files}
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        split = {"train": f["train"][:64], "val": f["val"][:8]}
    with np.load(FID, allow_pickle=False) as f:
        fid = {k: f[k] for k in f.files}
    def with_1e20(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...] | None = None) -> dict:
        value = np.zeros(shape) if shape else arrays[key].copy()
        value.flat[0] = 1e20  # finite: float32 holds it, the solvers overflow on it
        return arrays | {key: value}

    files = {
        "poses": {"pose_body": poses},
        "poses_1e20": with_1e20({"pose_body": poses}, "pose_body"),
        "clip_1e20_pose_body": with_1e20(clip, "pose_body"),
        "clip_1e20_root_orient": with_1e20(clip, "root_orient"),
        "clip_1e20_trans": with_1e20(clip, "trans", (12, 3)),
        "clip_1e20_betas": with_1e20(clip, "betas", (16,)),
        "joints_1e20": with_1e20({}, "joints", (12, 22, 3)),
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
    # Headers that declare 2^40 values (4 TiB) in members of 16 bytes: refused from the header, never allocated.
    forged = {
        "poses_forged": ("pose_body", (2**40 // 63, 63)),
        "joints_forged": ("joints", (2**40 // 66, 22, 3)),
        "keypoints_forged": ("keypoints", (2**40 // 69, 23, 3)),
    }
    for name, (key, shape) in forged.items():
        paths[name] = folder / f"{name}.npz"
        with zipfile.ZipFile(paths[name], "w") as z:
            z.writestr(f"{key}.npy", npy_header(shape) + bytes(16))
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
    # finite but far out of range: refused when read, not blamed on the checkpoint after the run
    "complete 1e20 pose_body": (["complete", "--poses", "{poses_1e20}", "--part", "left_arm"],
                                ["poses_1e20.npz: 'pose_body' holds values up to 1e+20 (axis-angles must be within "
                                 "±100 rad)"]),
    "denoise 1e20 pose_body": (["denoise", "--clip", "{clip_1e20_pose_body}"],
                               ["clip_1e20_pose_body.npz: 'pose_body' holds values up to 1e+20", "±100 rad"]),
    "denoise 1e20 root_orient": (["denoise", "--clip", "{clip_1e20_root_orient}"],
                                 ["clip_1e20_root_orient.npz: 'root_orient' holds values up to 1e+20", "±100 rad"]),
    "denoise 1e20 trans": (["denoise", "--clip", "{clip_1e20_trans}"],
                           ["clip_1e20_trans.npz: 'trans' holds values up to 1e+20 (positions must be within "
                            "±10000 m)"]),
    "denoise 1e20 betas": (["denoise", "--clip", "{clip_1e20_betas}"],
                           ["clip_1e20_betas.npz: 'betas' holds values up to 1e+20", "±1000"]),
    "denoise 1e20 joints": (["denoise", "--joints", "{joints_1e20}"],
                            ["joints_1e20.npz: 'joints' holds values up to 1e+20", "±10000 m"]),
    # headers that declare more than the file holds
    "complete forged 2^40 poses": (["complete", "--poses", "{poses_forged}", "--part", "legs"],
                                   ["poses_forged.npz", f"'pose_body' declares shape ({2**40 // 63}, 63)",
                                    "holds 16 bytes"]),
    "denoise forged 2^40 clip": (["denoise", "--clip", "{poses_forged}"],
                                 ["poses_forged.npz", f"'pose_body' declares shape ({2**40 // 63}, 63)",
                                  "holds 16 bytes"]),
    "denoise forged 2^40 joints": (["denoise", "--joints", "{joints_forged}"],
                                   ["joints_forged.npz", f"'joints' declares shape ({2**40 // 66}, 22, 3)",
                                    "holds 16 bytes"]),
    "fit forged 2^40 keypoints": (["fit", "--keypoints", "{keypoints_forged}", "--prior", "none"],
                                  ["keypoints_forged.npz", f"'keypoints' declares shape ({2**40 // 69}, 23, 3)",
                                   "holds 16 bytes"]),
    # output paths that cannot be written, refused before the run
    "generate --out name too long": (["generate", "--steps", 2, "--out", "{tmp}/" + "a" * 300 + ".npz"],
                                     ["--out cannot be written (File name too long)"]),
    "complete --out temporary name too long": (["complete", "--poses", "{poses}", "--part", "legs",
                                                "--out", "{out}/" + "b" * 245 + ".npz"],
                                               ["--out", "263 bytes with the temporary file's suffix", "255"]),
    "denoise --out folder name too long": (["denoise", "--clip", "{clip}", "--out", "{out}/" + "c" * 300 + "/d.npz"],
                                           ["--out", "a folder name of 300 bytes is over the limit of 255"]),
    "generate --out unwritable": (["generate", "--steps", 2, "--out", "/proc/dposer-test.npz"],
                                  ["/proc/dposer-test.npz: --out cannot be written"]),
    # ~user that does not exist, in outputs and inputs
    "generate --out ~nosuchuser": (["generate", "--steps", 2, "--out", "~nosuchuser/x.npz"],
                                   ["error: ~nosuchuser/x.npz: no such user"]),
    "denoise --metrics ~nosuchuser": (["denoise", "--clip", "{clip}", "--metrics", "~nosuchuser/m.json"],
                                      ["error: ~nosuchuser/m.json: no such user"]),
    "complete --poses ~nosuchuser": (["complete", "--poses", "~nosuchuser/p.npz", "--part", "legs"],
                                     ["error: ~nosuchuser/p.npz: no such user"]),
    "generate --body-model ~nosuchuser": (["generate", "--steps", 2, "--body-model", "~nosuchuser/SMPLX_NEUTRAL.npz"],
                                          ["error: ~nosuchuser/SMPLX_NEUTRAL.npz: no such user"]),
}
OUT_NAME = {"generate": "result.npz", "complete": "result.npz", "denoise": "result.npz", "eval": "eval.json",
            "fit": "result.npz"}


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


# -- faults after the checks: a write that fails, a kill ---------------------------------------------


def _cli_with(patch: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``dposer args`` run by ``prior.cli.main`` in a fresh Python after ``patch`` (Python code, with
    ``os``, ``signal``, ``sys``, ``tempfile`` and ``np`` imported): a fault placed inside the real command."""
    script = f"import os, signal, sys, tempfile\nimport numpy as np\n{patch}\n"
    script += "from prior.cli import main\nmain(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path):
    """What a non-root user meets in a read-only folder (root passes permission bits, so the refusal
    is put where the check creates its probe)."""
    refuse = "def refuse(*a, **k):\n    raise PermissionError(13, 'Permission denied')\n"
    patch = refuse + "tempfile.mkstemp = tempfile.mkdtemp = refuse"
    for out in (tmp_path / "x.npz", tmp_path / "new" / "x.npz"):
        proc = _cli_with(patch, "generate", "--ckpt", CKPT, "--out", out, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert _lines(proc.stderr) == [f"dposer: error: {out}: --out cannot be written (Permission denied)"]
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "x.npz"
    patch = ("def full(f, **arrays):\n    f.write(b'half a file')\n    raise OSError(28, 'No space left on device')\n"
             "np.savez = full")
    proc = _cli_with(patch, "generate", "--ckpt", CKPT, "--num", 2, "--steps", 2, "--out", out, cwd=tmp_path)
    assert_error_after_progress(proc)
    assert _lines(proc.stderr)[-1] == f"dposer: error: {out}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_a_run_exits_cleanly(tmp_path):
    """SIGTERM (kill, timeout, a scheduler) unwinds like Ctrl-C: one line, exit 143, nothing left."""
    out = tmp_path / "x.npz"
    proc = subprocess.Popen([DPOSER, "generate", "--ckpt", CKPT, "--num", "2000", "--steps", "1000", "--out", out],
                            stderr=subprocess.PIPE, cwd=tmp_path)
    seen = b""
    while b"generate" not in seen:  # the progress bar: the prior is loaded and sampling
        chunk = os.read(proc.stderr.fileno(), 256)
        assert chunk, f"dposer ended before sampling: {seen.decode()}"
        seen += chunk
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
    stderr = (seen + rest).decode()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and _lines(stderr)[-1] == "dposer: terminated", stderr
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_writing_removes_the_temporary_file(tmp_path):
    """The signal is sent from inside the write (np.savez, with the temporary file half written): the
    temporary file is removed and the target never appears."""
    out = tmp_path / "x.npz"
    patch = ("real = np.savez\n"
             "def killed_while_writing(f, **arrays):\n"
             "    f.write(b'half a file'); f.flush()\n"
             "    print(*sorted(os.listdir(os.path.dirname(sys.argv[-1]))), flush=True)\n"
             "    os.kill(os.getpid(), signal.SIGTERM)\n"
             "    real(f, **arrays)\n"
             "np.savez = killed_while_writing")
    proc = _cli_with(patch, "generate", "--ckpt", CKPT, "--num", 2, "--steps", 2, "--out", out, cwd=tmp_path)
    temporary = proc.stdout.split()
    assert len(temporary) == 1 and temporary[0].startswith(".x.npz.") and temporary[0].endswith(".tmp"), proc.stdout
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "Traceback" not in proc.stderr and _lines(proc.stderr)[-1] == "dposer: terminated", proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_sigterm_inside_the_bars_constructor_still_clears_the_bar(tmp_path):
    """The SIGTERM test's race, made certain: the signal arrives inside tqdm's constructor, after it
    printed the bar and before it recorded that it did (where a bar cannot be cleared). The signal is
    held until the bar is made, so the message still starts its own line."""
    patch = ("import tqdm.std\n"
             "real = tqdm.std.tqdm.refresh\n"
             "def refresh(self, *a, **k):\n"
             "    real(self, *a, **k)\n"
             "    if not hasattr(self, 'last_print_t'):  # the constructor's own first print\n"
             "        os.kill(os.getpid(), signal.SIGTERM)\n"
             "tqdm.std.tqdm.refresh = refresh")
    proc = _cli_with(patch, "generate", "--ckpt", CKPT, "--num", 2, "--steps", 50, "--out", tmp_path / "x.npz",
                     cwd=tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "generate" in proc.stderr, "the bar was never printed: the fault was not placed"
    assert "Traceback" not in proc.stderr and _lines(proc.stderr)[-1] == "dposer: terminated", proc.stderr
    assert list(tmp_path.iterdir()) == []
