"""Paper mode reproduces the original DPoser code: outputs of that code, run on the same network,
inputs and random numbers (``tests/data/dposer_original``, see its README for how they were made).

The random numbers are fed in through the tasks' ``noise=`` argument, in the order our solvers draw
them: the original draws hypothesis after hypothesis, ours a batch of them at once, so each replay
lays the recorded draws out as our batch rows (row ``p * H + h`` = pose ``p``, hypothesis ``h``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from prior import load_body_model, load_prior
from prior.completion import complete
from prior.data import load_clip
from prior.motion import DenoiseOptions, denoise_motion
from prior.motion_fit import fit_motion, observe_motion
from prior.optim import PAPER_COMPLETION, DPoserSchedule

from prior_helpers import DATA, OFFICIAL_CKPT, run
from synthetic_body import write_synthetic_model
from task_fixtures import one_thread  # noqa: F401 (a fixture)

FIXTURES = Path(__file__).parent / "data" / "dposer_original"
TOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def fixture(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


class Replay:
    """``noise(shape)`` handing out prepared draws in order, checking each call's shape."""

    def __init__(self, draws: Iterator[np.ndarray]):
        self.draws = draws
        self.calls = 0

    def __call__(self, shape) -> torch.Tensor:
        draw = next(self.draws)
        assert tuple(shape) == draw.shape, f"draw {self.calls}: asked for {tuple(shape)}, have {draw.shape}"
        self.calls += 1
        return torch.from_numpy(np.ascontiguousarray(draw, dtype=np.float32))


def rows(per_hypothesis: np.ndarray) -> np.ndarray:
    """``(H, P, D)`` draws -> ``(P * H, D)`` batch rows, row ``p * H + h``."""
    return np.swapaxes(per_hypothesis, 0, 1).reshape(-1, per_hypothesis.shape[-1])


@pytest.fixture(scope="module")
def official():
    return load_prior(OFFICIAL_CKPT, device="cpu")


def test_the_fixtures_normaliser_is_the_one_we_load_with_the_official_checkpoint(official):
    for name in ("completion", "scoresde", "motion"):
        f = fixture(name)
        np.testing.assert_allclose(official.mean.numpy(), f["mean"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(official.std.numpy(), f["std"], rtol=0, atol=1e-6)


def test_the_paper_time_grids_are_the_originals():
    np.testing.assert_allclose(PAPER_COMPLETION.times(), fixture("completion")["times"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(DenoiseOptions.paper(0.04).schedule.times(), fixture("motion")["times"], rtol=0,
                               atol=1e-7)


def completion_draws(start: np.ndarray, z: np.ndarray, masked: np.ndarray) -> Iterator[np.ndarray]:
    """The shared start (on the masked dims of each pose's first row), then one batch per step."""
    hypotheses, steps, poses, dim = z.shape
    first = np.zeros((poses * hypotheses, dim), np.float32)
    first[::hypotheses, masked] = start
    yield first
    for k in range(steps):
        yield rows(z[:, k])


def test_paper_completion_reproduces_the_original_run_completion(official):
    f = fixture("completion")
    masked = f["mask"] == 0
    hypotheses = f["z"].shape[0]
    streamed = []
    res = complete(official, f["pose_body"], torch.from_numpy(masked), hypotheses=hypotheses, solver="dposer-paper",
                   noise=Replay(completion_draws(f["start"], f["z"], masked)), callback=streamed.append,
                   callback_every=1)
    # Step by step: the first ten steps' masked dims, then the end (observed dims copied, as the original's).
    first = official.denormalize(torch.from_numpy(f["first_steps"])).numpy()  # (H, 10, P, D)
    for k in range(first.shape[1]):
        ours = streamed[k].pose_body.numpy()  # (P, H, D)
        np.testing.assert_allclose(ours[..., masked], np.swapaxes(first[:, k], 0, 1)[..., masked], rtol=0, atol=TOL,
                                   err_msg=f"step {k + 1}")
    np.testing.assert_allclose(res.pose_body.numpy(), f["out_axis"], rtol=0, atol=TOL)


def test_paper_completion_with_a_fixed_time_reproduces_the_original_demo(official):
    """``run/demo.py``'s variant: t = 0.1 throughout (its observed dims are not copied back; ours are)."""
    f = fixture("completion")
    masked = f["mask"] == 0
    hypotheses = f["demo_z"].shape[0]
    res = complete(official, f["pose_body"], torch.from_numpy(masked), hypotheses=hypotheses, solver="dposer-paper",
                   schedule=DPoserSchedule(t_max=0.1, t_min=0.1),
                   noise=Replay(completion_draws(f["demo_start"], f["demo_z"], masked)))
    expected = official.denormalize(torch.from_numpy(f["demo_out"])).numpy()  # (P, H, D)
    np.testing.assert_allclose(res.pose_body.numpy()[..., masked], expected[..., masked], rtol=0, atol=TOL)


def test_our_dposer_defaults_do_not_reproduce_the_original(official):
    """The deviations are real: the same draws through ``solver="dposer"`` give other completions."""
    f = fixture("completion")
    masked = f["mask"] == 0
    hypotheses = f["z"].shape[0]
    ours = complete(official, f["pose_body"], torch.from_numpy(masked), hypotheses=hypotheses, solver="dposer",
                    schedule=PAPER_COMPLETION, noise=Replay(completion_draws(f["start"], f["z"], masked)))
    assert np.abs(ours.pose_body.numpy() - f["out_axis"]).max() > 100 * TOL


def scoresde_draws(z_prior: np.ndarray, z_steps: np.ndarray) -> Iterator[np.ndarray]:
    """The start, then per step: the observation's noise before the network, the Euler-Maruyama
    noise, the observation's noise after the step."""
    yield rows(z_prior)
    for i in range(z_steps.shape[1]):
        for j in range(z_steps.shape[2]):
            yield rows(z_steps[:, i, j])


def test_scoresde_reproduces_the_originals_inpainting_sampler(official):
    f = fixture("scoresde")
    masked = f["mask"] == 0
    hypotheses, steps = f["z_steps"].shape[:2]
    res = complete(official, f["pose_body"], torch.from_numpy(masked), hypotheses=hypotheses, solver="scoresde",
                   steps=steps, noise=Replay(scoresde_draws(f["z_prior"], f["z_steps"])))
    expected = official.denormalize(torch.from_numpy(f["out"])).numpy()  # (P, H, D)
    # The random network's samples reach hundreds of radians: float32 precision is relative there.
    np.testing.assert_allclose(res.pose_body.numpy()[..., masked], expected[..., masked], rtol=TOL, atol=TOL)
    assert np.array_equal(res.pose_body.numpy()[..., ~masked], np.repeat(f["pose_body"][:, None], hypotheses, 1)[
        ..., ~masked])


@pytest.fixture(scope="module")
def synthetic_smplx(tmp_path_factory):
    """The synthetic SMPL-X file the motion fixture was made with (the real one is licensed)."""
    path = write_synthetic_model(tmp_path_factory.mktemp("body") / "SMPLX_NEUTRAL.npz", "smplx", seed=0)
    return load_body_model(path)


def test_our_body_model_reads_the_synthetic_file_as_the_originals_smplx_does(synthetic_smplx):
    f = fixture("motion")
    with torch.no_grad():
        ours = synthetic_smplx(torch.from_numpy(f["pose_body_gt"][:1]))
    np.testing.assert_allclose(ours.vertices[0].numpy(), f["vertices0"], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.joints[0, :22].numpy(), f["gt_joints"][0], rtol=0, atol=TOL)


@pytest.mark.slow
def test_paper_motion_denoising_reproduces_the_original(official, synthetic_smplx):
    """Step by step to 1e-5 for the first ten steps. The end to the floor measured between two runs
    of the original itself that differ at rounding level (float64 prior loss): the optimisation is
    chaotic at float precision (README of the fixtures). The original reports its MPJPE after its
    smoothing; without it, the poses are compared."""
    f = fixture("motion")
    steps = f["z"].shape[0]
    floor_rad, floor_mm = float(f["floor_pose_rad"]), float(f["floor_mpjpe_mm"])
    for smooth, key in ((False, "pose_body"), (True, "smoothed")):
        streamed = []
        options = DenoiseOptions.paper(0.04, smooth=smooth)
        res = denoise_motion(official, synthetic_smplx, torch.from_numpy(f["noisy_joints"]),
                             gt_joints=torch.from_numpy(f["gt_joints"]), options=options,
                             noise=Replay(iter([f["start_noise"], *f["z"]])), callback=streamed.append,
                             callback_every=1)
        assert len(streamed) == steps
        if not smooth:
            for k, expected in enumerate(f["first_steps"]):
                np.testing.assert_allclose(streamed[k].pose_body.numpy(), expected, rtol=0, atol=TOL,
                                           err_msg=f"step {k + 1}")
        diff = np.abs(res.pose_body.numpy() - f[key]).max()
        assert diff <= 2 * floor_rad, f"{key}: {diff:.3f} rad from the original's (floor {floor_rad:.3f})"
        if smooth:  # the original's MPJPE is in cm, per frame
            theirs = 10 * float(f["MPJPE"].mean())
            assert abs(res.mpjpe_out_mm - theirs) <= floor_mm, f"MPJPE {res.mpjpe_out_mm:.2f} vs {theirs:.2f} mm"


def test_the_cli_runs_paper_completion(tmp_path, official):
    """``dposer complete --solver dposer-paper`` is the library's paper mode, seed for seed."""
    f = fixture("completion")
    poses = tmp_path / "poses.npz"
    np.savez(poses, pose_body=f["pose_body"])
    out = tmp_path / "done.npz"
    run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", poses, "--part", "left_leg", "--hypotheses", 3,
        "--solver", "dposer-paper", "--seed", 5, "--out", out)
    ours = complete(official, f["pose_body"], torch.from_numpy(f["mask"] == 0), hypotheses=3, solver="dposer-paper",
                    seed=5)
    with np.load(out, allow_pickle=False) as written:
        np.testing.assert_allclose(written["pose_body"], ours.pose_body.numpy(), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_cli_runs_paper_motion_denoising_with_smoothing(tmp_path, official):
    """``dposer denoise --method paper --smooth``: the library's ``DenoiseOptions.paper(smooth=True)``
    (noise from --seed, the solver's draws from --seed + 1), and the metrics say which method ran."""
    with np.load(DATA / "gesture_clip.npz", allow_pickle=False) as f:
        clip_arrays = {"pose_body": f["pose_body"][:12], "root_orient": f["root_orient"][:12]}
    src, out, metrics = tmp_path / "clip.npz", tmp_path / "out.npz", tmp_path / "m.json"
    np.savez(src, **clip_arrays)
    run("denoise", "--ckpt", OFFICIAL_CKPT, "--clip", src, "--method", "paper", "--smooth", "--seed", 3,
        "--out", out, "--metrics", metrics)
    report = json.loads(metrics.read_text())
    assert report["method"] == "paper" and report["smooth"] is True
    clip, body = load_clip(src), load_body_model()
    obs = observe_motion(body, clip, noise_std_m=0.04, seed=3)
    fit = fit_motion(official, body, clip, obs, options=DenoiseOptions.paper(0.04, smooth=True), seed=4)
    with np.load(out, allow_pickle=False) as written:
        np.testing.assert_allclose(written["pose_body"], fit.clip.pose_body, rtol=0, atol=1e-5)
    assert report["mpjpe_out_mm"] == pytest.approx(fit.metrics["mpjpe_out_mm"], abs=1e-3)
