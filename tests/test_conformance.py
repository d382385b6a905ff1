"""The official DPoser checkpoint format loads unchanged and reproduces the reference numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from prior import InputError, load_prior
from prior.checkpoint import save_prior
from prior.pose_prior import PosePrior
from prior.space import BODY_SPACE

from prior_helpers import OFFICIAL_CKPT, REFERENCE_OUTPUTS, rel_err

TOL = 1e-4


@pytest.fixture(scope="module")
def official():
    return load_prior(OFFICIAL_CKPT, device="cpu")


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE_OUTPUTS, allow_pickle=False) as f:
        return {k: torch.from_numpy(f[k]) for k in f.files}


def reference_outputs(prior, ref) -> dict[str, torch.Tensor]:
    x, t = ref["x"], ref["t"]
    sde = prior.sde
    with torch.no_grad():
        score = prior.score(x, t)
        mean, std = sde.marginal_prob(x, t)
        drift, g = sde.reverse(x, t, score)
        x_mean = x - drift / sde.N
        return {
            "net_out_at_labels_t999": prior.net_output(x, t),
            "score": score,
            "marginal_mean": mean,
            "marginal_std": std,
            "alpha": sde.alpha(t),
            "sigma": sde.std(t),
            "x0_hat": prior.x0_hat(x, t),
            "reverse_drift": drift,
            "reverse_diffusion": g,
            "em_step_x_mean": x_mean,
            "em_step_x_next": x_mean + g[:, None] * (1 / sde.N) ** 0.5 * ref["em_noise"],
        }


def test_official_checkpoint_reproduces_every_reference_array(official, ref):
    ours = reference_outputs(official, ref)
    expected = set(ref) - {"x", "t", "em_noise"}
    assert set(ours) == expected
    for key, value in ours.items():
        assert value.shape == ref[key].shape, key
        assert rel_err(value, ref[key]) < TOL, key


def test_official_checkpoint_uses_ema_weights_in_eval_mode(official, ref):
    raw = torch.load(OFFICIAL_CKPT, weights_only=True)
    assert not official.net.training
    assert torch.equal(official.net.pre_dense.weight, raw["ema"]["shadow_params"][0])
    assert not torch.equal(official.net.pre_dense.weight, raw["model_state_dict"]["pre_dense.weight"])
    assert official.info["format"] == "dposer-official" and official.info["ema"]
    assert official.space is BODY_SPACE  # DPoser's released network is a body prior
    assert sum(p.numel() for p in official.net.parameters()) == 8_277_567


def test_dposer_x_lightning_checkpoint_gives_the_same_numbers(official, ref, tmp_path):
    raw = torch.load(OFFICIAL_CKPT, weights_only=True)
    names = [k for k in raw["model_state_dict"] if k != "sigmas"]
    keep = [i for i, k in enumerate(names) if not k.startswith("pre_dense_cond")]
    ckpt = {
        "state_dict": {
            f"model.{k}": v for k, v in raw["model_state_dict"].items() if not k.startswith("pre_dense_cond")
        },
        "model_ema": {**raw["ema"], "shadow_params": [raw["ema"]["shadow_params"][i] for i in keep]},
        "global_step": 150000,
        "hyper_parameters": {"lr": 2e-4},
    }
    path = tmp_path / "body.ckpt"
    torch.save(ckpt, path)
    dx = load_prior(path, device="cpu")
    assert dx.info["format"] == "dposer-x" and dx.info["step"] == 150000 and dx.space is BODY_SPACE
    assert not dx.net.config.cond_layer
    ours = reference_outputs(dx, ref)
    assert rel_err(ours["score"], ref["score"]) < TOL
    assert rel_err(ours["x0_hat"], ref["x0_hat"]) < TOL


def test_own_format_round_trips_weights_normaliser_and_provenance(official, ref, tmp_path):
    path = save_prior(official, tmp_path / "p.safetensors", provenance={"data": "conformance", "steps": 400000})
    again = load_prior(path, device="cpu")
    assert again.info["format"] == "dposer-view" and again.info["steps"] == 400000
    assert torch.equal(again.mean, official.mean) and torch.equal(again.std, official.std)
    assert rel_err(reference_outputs(again, ref)["score"], ref["score"]) < TOL
    # The file is not a pickle: the safetensors header is JSON.
    head = path.read_bytes()[:9]
    assert head[8:9] == b"{"


def test_own_format_records_the_pose_space_and_refuses_an_unknown_one(official, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_prior(official, tmp_path / "body.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert meta["pose_space"] == "body"
    assert load_prior(path, device="cpu").space is BODY_SPACE

    # A file written before pose spaces were recorded is a body prior.
    older = tmp_path / "older.safetensors"
    save_file(tensors, str(older), metadata={k: v for k, v in meta.items() if k != "pose_space"})
    assert load_prior(older, device="cpu").space is BODY_SPACE

    alien = dataclasses.replace(BODY_SPACE, name="tentacles")
    alien_prior = PosePrior(official.net, official.mean, official.std, space=alien)
    other = save_prior(alien_prior, tmp_path / "alien.safetensors")
    with pytest.raises(InputError) as err:
        load_prior(other, device="cpu")
    message = str(err.value)
    assert "\n" not in message and str(other) in message and "'tentacles'" in message and "body" in message


def test_normalize_denormalize_are_inverse(official):
    pose = torch.randn(5, 63) * 0.3
    assert torch.allclose(official.denormalize(official.normalize(pose)), pose, atol=1e-6)


def test_shipped_normaliser_matches_the_reference_implementation_files(official):
    files = OFFICIAL_CKPT.parents[1] / "data" / "dposer_normalizer_files"
    ref = torch.load(files / "axis_normalize2.pt", weights_only=True)
    assert torch.allclose(official.mean, ref["mean_poses"].float(), atol=1e-6)
    assert torch.allclose(official.std, ref["std_poses"].float(), atol=1e-6)
