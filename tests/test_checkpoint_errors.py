"""Bad checkpoint files give one clear line naming the file; nothing is unpickled but plain data."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from safetensors.torch import save_file

import prior.files
from prior import InputError, load_prior
from prior.checkpoint import save_prior

from prior_helpers import OFFICIAL_CKPT, small_random_prior


@pytest.fixture(scope="module")
def raw():
    return torch.load(OFFICIAL_CKPT, weights_only=True)


def expect_error(path, *fragments: str) -> str:
    with pytest.raises(InputError) as info:
        load_prior(path, device="cpu")
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_missing_empty_and_folder(tmp_path):
    expect_error(tmp_path / "nope.pth", "no such file")
    (tmp_path / "empty.pth").write_bytes(b"")
    expect_error(tmp_path / "empty.pth", "empty")
    expect_error(tmp_path, "folder")


def test_truncated_and_non_checkpoint_files(tmp_path):
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(OFFICIAL_CKPT.read_bytes()[: 1 << 20])
    expect_error(trunc, "truncated")
    text = tmp_path / "notes.pth"
    text.write_text("just some text\n")
    expect_error(text, "not a checkpoint")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    expect_error(junk, "safetensors")


def test_wrong_dict_layout(tmp_path, raw):
    path = tmp_path / "other.pth"
    torch.save({"weights": raw["model_state_dict"]}, path)
    expect_error(path, "not a DPoser checkpoint", "weights")


def test_wrong_shape_and_missing_keys(tmp_path, raw):
    bad = dict(raw)
    sd = dict(raw["model_state_dict"])
    sd["b1_dense2.weight"] = sd["b1_dense2.weight"][:, :512]
    bad["model_state_dict"] = sd
    path = tmp_path / "shape.pth"
    torch.save(bad, path)
    expect_error(path, "b1_dense2.weight", "(1024, 512)", "(1024, 1024)")

    sd = {k: v for k, v in raw["model_state_dict"].items() if k != "b2_gnorm1.bias"}
    torch.save({**raw, "model_state_dict": sd}, path)
    expect_error(path, "missing", "b2_gnorm1.bias")


def test_6d_rotation_prior_is_refused_with_a_reason(tmp_path, raw):
    sd = dict(raw["model_state_dict"])
    sd["pre_dense.weight"] = torch.zeros(1024, 126)
    path = tmp_path / "rot6d.pth"
    torch.save({**raw, "model_state_dict": sd}, path)
    expect_error(path, "126-d", "63")


def test_ema_mismatch_and_nan(tmp_path, raw):
    path = tmp_path / "ema.pth"
    torch.save({**raw, "ema": {**raw["ema"], "shadow_params": raw["ema"]["shadow_params"][:-1]}}, path)
    expect_error(path, "35 shadow params", "36")
    shadow = list(raw["ema"]["shadow_params"])
    shadow[3] = shadow[3].clone()
    shadow[3][0] = float("nan")
    torch.save({**raw, "ema": {**raw["ema"], "shadow_params": shadow}}, path)
    expect_error(path, "NaN")


class ConfigObject:
    """Stands for the config objects Lightning checkpoints carry beside the weights."""

    def __init__(self) -> None:
        self.lr = 2e-4


def test_config_objects_beside_the_weights_are_read_as_inert_stubs(tmp_path, raw):
    path = tmp_path / "lightning-like.pth"
    torch.save({**raw, "cfg": argparse.Namespace(lr=1), "hparams": ConfigObject()}, path)
    prior = load_prior(path, device="cpu")
    assert prior.info["ema"]
    assert not hasattr(ConfigObject, "__setstate__"), "the real class is never used"


def test_pickled_code_never_runs(tmp_path, raw):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "payload.pth"
    torch.save({**raw, "extra": Payload(), "cfg": argparse.Namespace(lr=1)}, path)
    expect_error(path, "system", "cannot be read safely")  # a file that calls os.system is refused
    assert not marker.exists()  # ...and the payload's code never ran


def _poison(module: str, name: str, attr: str, value: bytes) -> bytes:
    """A pickle that looks up ``module.name`` and BUILDs ``attr = value`` onto it (a 70-byte
    .pth): loaded by a general unpickler, it changes that object for the whole process."""

    def text(t: str) -> bytes:  # BINUNICODE
        return b"X" + len(t).to_bytes(4, "little") + t.encode()

    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + b"N}" + text(attr) + value + b"s\x86b."


def test_a_refused_file_changes_nothing_in_the_process(tmp_path):
    """Both poison files are refused, no object of the process changes, and the official
    checkpoint then loads bit-identical to a fresh process's load."""
    import collections
    import subprocess
    import sys

    from torch._utils import _rebuild_tensor_v2

    defaults, most_common = _rebuild_tensor_v2.__defaults__, collections.Counter.most_common
    (tmp_path / "defaults.pth").write_bytes(
        _poison("torch._utils", "_rebuild_tensor_v2", "__defaults__", b"X\x01\x00\x00\x00x\x85"))
    (tmp_path / "counter.pth").write_bytes(_poison("collections", "Counter", "most_common", b"N"))
    for name in ("defaults.pth", "counter.pth"):
        expect_error(tmp_path / name, "cannot be read safely")
    assert _rebuild_tensor_v2.__defaults__ == defaults
    assert collections.Counter.most_common is most_common
    here = load_prior(OFFICIAL_CKPT, device="cpu").net.state_dict()
    fresh = tmp_path / "fresh.pt"
    code = ("import sys, torch; from prior import load_prior; "
            "torch.save(load_prior(sys.argv[1], device='cpu').net.state_dict(), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(OFFICIAL_CKPT), str(fresh)], check=True)
    there = torch.load(fresh, weights_only=True)
    assert here.keys() == there.keys() and all(torch.equal(here[k], there[k]) for k in here)


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(3)}, str(path))
    expect_error(path, "metadata")


def test_own_format_missing_normaliser(tmp_path):
    prior = small_random_prior()
    path = save_prior(prior, tmp_path / "p.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("normalizer")}
    save_file(tensors, str(path), metadata=meta)
    expect_error(path, "normaliser")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = save_prior(small_random_prior(), tmp_path / "p.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]
    before = path.read_bytes()

    class FullDisk:
        """The file being written: half of the bytes go to disk, then the disk is full."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data[: len(data) // 2]))
            self.f.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_fdopen = os.fdopen
    monkeypatch.setattr(prior.files.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        save_prior(small_random_prior(seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]
