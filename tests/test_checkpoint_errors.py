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


# ---- memory is bounded by design: nothing larger than the file is made from what it declares ----------


def _text(t: str) -> bytes:  # BINUNICODE
    return b"X" + len(t).to_bytes(4, "little") + t.encode()


def _int(n: int) -> bytes:  # LONG1
    size = (n.bit_length() + 8) // 8
    return b"\x8a" + bytes([size]) + n.to_bytes(size, "little", signed=True)


def _torch_zip(path, pickled: bytes, records: dict[str, bytes] | None = None, *, deflate: int = 0) -> None:
    """A torch zip checkpoint as torch.save lays it out, with ``pickled`` as its data.pkl."""
    import zipfile

    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method, compresslevel=deflate or None) as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")


@pytest.mark.parametrize("module,name,seen_as", [
    ("builtins", "bytearray", "builtins.bytearray"),
    ("__builtin__", "bytearray", "builtins.bytearray"),  # torch maps Python 2 names before its allowlist
    ("torch", "Tensor", "torch.Tensor"),
    ("torch.storage", "UntypedStorage", "torch.storage.UntypedStorage"),
])
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_tiny_pickle_that_allocates_a_stated_size_is_refused_before_torch_reads_it(
    tmp_path, module, name, seen_as, layout
):
    """32 bytes: GLOBAL builtins.bytearray, 3e9, REDUCE. Torch's weights-only unpickler allows the call
    (it made 3 GB); the walk over the pickle refuses it, in a process that could not afford it."""
    from bounded_load import bounded_load

    pickled = b"\x80\x02" + f"c{module}\n{name}\n".encode() + _int(3 * 10**9) + b"\x85R."
    path = tmp_path / f"{name}.pth"
    if layout == "zip":
        _torch_zip(path, pickled)
    else:
        path.write_bytes(pickled)
    assert path.stat().st_size < 400
    result = bounded_load("load_prior(path, device='cpu')", path)
    assert result["outcome"] == (f"InputError: {path}: holds Python objects other than tensors ({seen_as}) "
                                 "that cannot be read safely"), result
    assert result["grew"] < 64 * 2**20 and result["seconds"] < 5, result


def _storage_pickle(numel: int, size: tuple[int, ...], stride: tuple[int, ...], *, legacy: bool = False) -> bytes:
    """``{'model_state_dict': {'w': tensor}}`` whose tensor rebuilds from storage '0' of ``numel`` floats."""
    tup = lambda xs: b"(" + b"".join(_int(x) for x in xs) + b"t"  # noqa: E731
    pid = b"(" + _text("storage") + b"ctorch\nFloatStorage\n" + _text("0") + _text("cpu") + _int(numel)
    pid += (b"N" if legacy else b"") + b"tQ"
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(0) + tup(size) + tup(stride) + b"\x89"
              + b"ccollections\nOrderedDict\n)Rt" + b"R")
    return b"\x80\x02}" + _text("model_state_dict") + b"}" + _text("w") + tensor + b"ss."


def test_compressed_records_that_inflate_past_the_file_are_refused(tmp_path):
    """torch.save stores records as they are; torch.load inflates a deflated one to its stated size (a
    0.3 MB file made a 300 MB storage). Its records must fit in the file."""
    from bounded_load import bounded_load

    n = 75_000_000  # floats: 300 MB of zeros
    path = tmp_path / "bomb.pth"
    _torch_zip(path, _storage_pickle(n, (n,), (1,)), {"0": bytes(4 * n)}, deflate=9)
    assert path.stat().st_size < 2**20
    result = bounded_load("load_prior(path, device='cpu')", path, headroom=256 * 2**20)
    expected = f"InputError: {path}: its records unpack to 286 MiB, more than the file's"
    assert result["outcome"].startswith(expected), result
    assert result["grew"] < 64 * 2**20, result


def test_a_storage_declared_larger_than_its_data_is_refused(tmp_path):
    """Zip: torch checks a storage's stated size against its record. Legacy: torch allocates the stated
    size first, so a 300-byte file made a 2 GB storage; the storages must fit in the bytes after the pickles."""
    from bounded_load import bounded_load

    zipped = tmp_path / "zip.pth"
    _torch_zip(zipped, _storage_pickle(10**9, (2, 2), (2, 1)), {"0": bytes(16)})
    expect_error(zipped, "truncated or corrupt", "does not match")
    legacy = tmp_path / "legacy.pth"
    magic = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # torch's legacy magic number, protocol 1001, sys info
    header = magic + b"\x80\x02M\xe9\x03." + b"\x80\x02}" + _text("little_endian") + b"\x88s."
    keys = b"\x80\x02]" + _text("0") + b"a."
    legacy.write_bytes(header + _storage_pickle(500_000_000, (4,), (1,), legacy=True) + keys
                       + (4).to_bytes(8, "little") + bytes(16))
    result = bounded_load("load_prior(path, device='cpu')", legacy)
    assert result["outcome"] == f"InputError: {legacy}: declares 1907 MiB of tensor data but holds 0 MiB " \
                                "(truncated or forged)", result


def _views_state(hidden: int, embed: int, blocks: int = 2) -> dict[str, torch.Tensor]:
    """ScoreModelFC weights of any width, each a zero-stride view of one stored float (a few KB on disk)."""
    raw = torch.load(OFFICIAL_CKPT, weights_only=True)
    one = torch.full((1,), 0.01)
    shapes = {"pre_dense": (hidden, 63), "pre_dense_t": (hidden, embed), "pre_dense_cond": (hidden, hidden),
              "pre_gnorm": (hidden,), "shared_time_embed.0": (embed, embed), "post_dense": (63, hidden)}
    for b in range(1, blocks + 1):
        for name, shape in (("dense1", (hidden, hidden)), ("dense1_t", (hidden, embed)), ("gnorm1", (hidden,)),
                            ("dense2", (hidden, hidden)), ("dense2_t", (hidden, embed)), ("gnorm2", (hidden,))):
            shapes[f"b{b}_{name}"] = shape
    state = {"sigmas": raw["model_state_dict"]["sigmas"]}
    for name, shape in shapes.items():
        state[f"{name}.weight"], state[f"{name}.bias"] = one.expand(*shape), one.expand(shape[0])
    return state


@pytest.mark.parametrize(
    "width,message",
    [((8192, 8192, 2), "network has hidden width 8192, over the limit of 4096"),
     ((4096, 4096, 16), "network has 1,125,138,495 parameters, over the limit of 100,000,000"),
     ((1024, 512, 2), "weight 'pre_dense.weight' (1024, 63) is a view that repeats or overlaps its stored values")],
)
def test_zero_stride_weights_and_huge_widths_are_refused_before_the_network_is_built(tmp_path, width, message):
    """A few KB of zero-stride views declared width 8192: building the network took 3.3 GB. Widths and
    the parameter count are checked from the shapes first, and every weight must be stored in full."""
    from bounded_load import bounded_load

    path = tmp_path / "views.pth"
    torch.save({"model_state_dict": _views_state(*width), "epoch": 1, "step": 1}, path)
    assert path.stat().st_size < 32 * 1024
    result = bounded_load("load_prior(path, device='cpu')", path)
    assert result["outcome"].startswith(f"InputError: {path}: {message}"), result
    assert result["grew"] < 128 * 2**20, result


def test_the_parameter_bound_counts_what_the_network_would_have():
    from prior.checkpoint import _parameter_count
    from prior.model import NetConfig, ScoreNet

    for config in (NetConfig(), NetConfig(hidden=64, embed=32, blocks=3, cond_layer=False), NetConfig(blocks=0)):
        assert _parameter_count(config) == sum(p.numel() for p in ScoreNet(config).parameters())


def test_own_format_widths_are_checked_from_the_header_before_any_tensor_is_read(tmp_path, monkeypatch):
    import prior.checkpoint

    path = save_prior(small_random_prior(hidden=64), tmp_path / "p.safetensors")
    monkeypatch.setattr(prior.checkpoint, "MAX_HIDDEN", 32)
    read = []
    from safetensors import safe_open

    class Spy:
        def __init__(self, *args, **kwargs):
            self.f = safe_open(*args, **kwargs)

        def __enter__(self):
            self.inner = self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def get_tensor(self, key):
            read.append(key)
            return self.inner.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr("safetensors.safe_open", Spy)
    expect_error(path, "network has hidden width 64, over the limit of 32")
    assert read == []


def test_a_safetensors_header_over_the_limit_is_refused(tmp_path):
    import json

    header = json.dumps({"__metadata__": {"format": "dposer-view", "pad": "x" * (17 * 2**20)}}).encode()
    path = tmp_path / "big-header.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    expect_error(path, "header is 17 MiB, over the 16 MiB limit")


def test_weights_that_overflow_are_refused_by_a_probe_of_the_network(tmp_path, raw):
    """Finite weights x 1e30 loaded and turned every sample into NaN, with no notification."""
    path = tmp_path / "x1e30.pth"
    torch.save({**raw, "ema": {**raw["ema"], "shadow_params": [p * 1e30 for p in raw["ema"]["shadow_params"]]}},
               path)
    expect_error(path, "network outputs NaN/Inf on a test batch; the weights are broken")


def test_own_format_with_a_broken_sde_or_normaliser_is_refused(tmp_path):
    import json

    from safetensors import safe_open

    path = save_prior(small_random_prior(), tmp_path / "p.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    bad = tmp_path / "sde.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "sde": json.dumps({"beta_min": 0.1, "beta_max": float("nan")})})
    expect_error(bad, "bad SDE in the metadata")
    bad = tmp_path / "std.safetensors"
    save_file({**tensors, "normalizer.std": torch.full((63,), float("inf"))}, str(bad), metadata=meta)
    expect_error(bad, "normaliser statistics must be finite (63,) with positive std")
