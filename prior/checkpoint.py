"""Loading and saving priors: one loader per format, all behind ``load_prior``.

Formats read:
- the official DPoser ``.pth`` (``model_state_dict`` + ``ema`` shadow list), normalised with the
  AMASS train statistics the released model expects (shipped in ``assets/``);
- the DPoser-X body ``.ckpt`` (Lightning ``state_dict`` with ``model.`` prefix, EMA in ``model_ema``);
- this project's ``.safetensors`` files: EMA weights, network config, normaliser, pose space
  (``pose_space`` in the metadata; absent = the body space) and provenance in one file that
  cannot execute code when read.

The torch formats are body priors (:data:`prior.space.BODY_SPACE`).

Torch files are read with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled.

Memory is bounded by design: what a file declares (the calls and storages in its pickle, its
records' sizes, the network's widths and parameter count) is checked against limits before
anything of that size is allocated, and a loaded network must give finite outputs on a small
fixed batch (:func:`_probe`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import pickletools
import re
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .files import asset_path, atomic_write, checked_file, default_checkpoint_path
from .model import NetConfig, ScoreNet
from .parts import POSE_DIM
from .pose_prior import PosePrior, resolve_device
from .sde import SubVPSDE
from .space import BODY_SPACE, space_named

FORMAT_NAME = "dposer-view"
FORMAT_VERSION = 1
MAX_CHECKPOINT_BYTES = 2 * 1024**3

# Memory is bounded by design: every size below is checked from what the file declares, before
# anything of that size is allocated.
# The pickle of a torch file holds only names and numbers (the official one is 7 KB).
MAX_PICKLE_BYTES = 8 * 2**20
# The largest network read (the official DPoser and DPoser-X: hidden 1024, embedding 512, 2 blocks,
# 8.3M parameters; 100M float32 parameters are 400 MB).
MAX_HIDDEN = 4096
MAX_EMBED = 4096
MAX_BLOCKS = 16
MAX_NUM_SCALES = 100_000
MAX_PARAMETERS = 100_000_000
# A safetensors header is JSON naming ~40 tensors; the library itself allows 100 MB.
MAX_SAFETENSORS_HEADER = 16 * 2**20
# The probe run on every load: PROBE_POSES fixed poses at each of PROBE_TIMES.
PROBE_POSES = 8
PROBE_TIMES = (0.01, 0.5, 1.0)


def amass_normalizer() -> tuple[torch.Tensor, torch.Tensor]:
    """AMASS train-split z-score statistics ``(mean, std)``, each ``(63,)``, as the official model expects."""
    with np.load(asset_path("amass_axis_normalizer.npz"), allow_pickle=False) as f:
        return torch.from_numpy(f["mean"].astype(np.float32)), torch.from_numpy(f["std"].astype(np.float32))


def load_prior(path: str | os.PathLike | None = None, device: str | torch.device = "auto") -> PosePrior:
    """Load a prior. ``path=None`` loads the shipped default; otherwise the format is detected.

    Raises ``InputError`` (one line, naming the file) for anything that is not a usable checkpoint.
    """
    if path is None:
        path = default_checkpoint_path()
        if not path.exists():
            raise InputError("the shipped default prior is missing; pass --ckpt with a DPoser checkpoint", path)
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder, expected a checkpoint file (.pth, .ckpt or .safetensors)", path)
    size = checked_file(path, max_bytes=MAX_CHECKPOINT_BYTES).stat().st_size
    dev = resolve_device(device)
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        prior = _load_own(path)
    elif head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # torch zip / legacy pickle
        prior = _load_torch(path)
    else:
        raise InputError("not a checkpoint: expected a PyTorch .pth/.ckpt or a .safetensors file", path)
    _probe(prior, path)
    return prior.to(dev)


def _probe(prior: PosePrior, path: Path) -> None:
    """Run the network once on a small fixed batch (``PROBE_POSES`` poses at each of ``PROBE_TIMES``):
    finite weights can still overflow (weights x 1e30 load, then turn every sample into NaN)."""
    net = prior.net
    x = torch.randn(PROBE_POSES, net.config.input_dim, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(PROBE_TIMES).repeat_interleave(PROBE_POSES)
    try:
        with torch.no_grad():
            out = net(x.repeat(len(PROBE_TIMES), 1).to(prior.device), (t * 999).to(prior.device))
    except (RuntimeError, IndexError) as e:
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise InputError(f"network fails on a test batch ({reason}); the weights are broken", path) from None
    if not torch.isfinite(out).all():
        raise InputError("network outputs NaN/Inf on a test batch; the weights are broken", path)


# -- torch formats (official DPoser, DPoser-X) --------------------------------------------------
def _load_torch(path: Path) -> PosePrior:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise InputError(f"holds a {type(ckpt).__name__}, expected a DPoser checkpoint dict", path)
    if "model_state_dict" in ckpt:
        state = ckpt["model_state_dict"]
        ema = ckpt.get("ema")
        fmt, step = "dposer-official", ckpt.get("step")
    elif "state_dict" in ckpt:
        prefixed = ckpt["state_dict"]
        if not isinstance(prefixed, dict):
            raise InputError("'state_dict' is not a dict of tensors", path)
        state = {k[len("model.") :]: v for k, v in prefixed.items() if k.startswith("model.")}
        if not state:
            raise InputError("'state_dict' has no 'model.*' keys, expected a DPoser-X Lightning checkpoint", path)
        ema = ckpt.get("model_ema")
        fmt, step = "dposer-x", ckpt.get("global_step")
    else:
        keys = ", ".join(sorted(map(str, ckpt))[:8]) or "nothing"
        raise InputError(
            f"not a DPoser checkpoint: expected 'model_state_dict' (DPoser .pth) or 'state_dict' "
            f"(DPoser-X .ckpt), found {keys}",
            path,
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("the model state dict is not a dict of tensors", path)
    net = _net_from_state(state, path)
    if ema is None:
        used_ema = False
    else:
        _copy_ema(net, ema, path)
        used_ema = True
    mean, std = amass_normalizer()
    info = {"format": fmt, "path": str(path), "step": _plain(step), "ema": used_ema, "normalizer": "amass_axis_zscore"}
    return PosePrior(net, mean, std, info=info)


def _torch_load(path: Path) -> Any:
    """The file's contents through torch's weights-only unpickler, always.

    Lightning checkpoints often carry config objects next to the weights. Their classes are let
    in as fresh inert stub classes made for this one read (:func:`_stub_class`), so the weights-only
    unpickler's rules still hold: nothing outside the result is touched (no attribute of a module,
    class or function is ever set: BUILD only fills instances of the stubs) and no foreign code
    runs. Only tensors are taken from what it returns.

    Before torch reads anything, :func:`_check_torch_file` walks the pickle without running it, so
    that nothing it would make can be larger than the file.
    """
    _check_torch_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise _unreadable(path, e) from None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the legacy (non-zip) format cannot be listed: refused as it is
        names = []
    if not names:
        raise _not_plain_data(path, refused)
    stubs = [(_stub_class(name), name) for name in names]
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _not_plain_data(path, e) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise _unreadable(path, e) from None


# Globals of torch's weights-only allowlist that a DPoser checkpoint uses: containers and the
# rebuild functions of dense tensors (whose views torch bounds by their storage), plus the names
# of storage types and dtypes, which are never called. The rest of that allowlist makes objects
# of a size the pickle states: bytearray(3e9) from a 32-byte file, torch.Tensor(n),
# UntypedStorage(n), quantized / sparse / meta / nested tensor rebuilds.
_USED_TORCH_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "torch.device",
    "torch.serialization._get_layout",
    "_codecs.encode",  # how protocol 2 pickles bytes
    "builtins.set",
    "builtins.complex",
})


def _torch_allowlist() -> dict[str, Any]:
    try:
        from torch import _weights_only_unpickler

        return _weights_only_unpickler._get_allowed_globals()
    except (ImportError, AttributeError):  # a torch without it: refuse what its modules could hold
        return {}


def _refused_global(name: str, allowed: dict[str, Any]) -> bool:
    if name in _USED_TORCH_GLOBALS:
        return False
    if name in allowed:
        return not isinstance(allowed[name], (torch.dtype, torch.serialization.StorageType))
    if not allowed:
        return name.split(".")[0] in ("torch", "builtins", "_codecs", "collections")
    return False  # not torch's to call: refused by torch, or read as an inert stub


class _Global(str):
    """A GLOBAL's qualified name, on the walk's stack."""


_OPAQUE = object()  # a value the walk does not follow (a container, the result of a call)


class _Exhausted(InputError):
    """The bytes ran out before the pickle's STOP."""


def _walk_pickle(stream: io.BytesIO, path: Path, allowed: dict[str, Any], ids: list[Any]) -> None:
    """Walk one pickle up to its STOP without running it, as torch's weights-only unpickler would
    read it (the same opcodes; literals kept, everything else opaque). Refuses globals that would
    make objects of a stated size and opcodes that unpickler does not read; appends the persistent
    ids (storage declarations) it holds to ``ids``."""
    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}
    literal = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in ("BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING"):
                stack.append(arg)
            elif name in literal:
                stack.append(literal[name])
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                if (module, attr) in NAME_MAPPING:  # as torch reads it: Python 2 names first
                    module, attr = NAME_MAPPING[(module, attr)]
                elif module in IMPORT_MAPPING:
                    module = IMPORT_MAPPING[module]
                qualified = _Global(f"{module}.{attr}")
                if _refused_global(qualified, allowed):  # the words of _not_plain_data
                    problem = f"holds Python objects other than tensors ({qualified}) that cannot be read safely"
                    raise InputError(problem, path)
                stack.append(qualified)
            elif name == "MARK":
                metastack.append(stack)
                stack = []
            elif name == "TUPLE":
                items, stack = stack, metastack.pop()
                stack.append(tuple(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise IndexError(name)
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append(_OPAQUE)
            elif name in ("APPEND", "BUILD"):
                stack.pop()
            elif name == "SETITEM":
                stack.pop(), stack.pop()
            elif name in ("APPENDS", "SETITEMS"):
                stack = metastack.pop()
            elif name in ("REDUCE", "NEWOBJ"):
                stack.pop()
                stack[-1] = _OPAQUE
            elif name == "BINPERSID":
                ids.append(stack.pop())
                stack.append(_OPAQUE)
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "STOP":
                return
            elif name != "PROTO":
                raise InputError(f"its pickle uses opcode {name}, which the weights-only loader does not read", path)
    except InputError:
        raise
    except (IndexError, KeyError) as e:
        raise InputError(f"not a readable PyTorch checkpoint (corrupt pickle: {type(e).__name__})", path) from None
    except ValueError as e:  # genops: truncated, or not a pickle opcode
        if stream.tell() >= stream.getbuffer().nbytes:
            raise _Exhausted(_unreadable(path, e).problem, path) from None
        raise _unreadable(path, e) from None
    raise _Exhausted("not a readable PyTorch checkpoint (truncated pickle)", path)


def _check_torch_file(path: Path) -> None:
    """Refuse a torch file before torch reads it when what it declares is larger than what it holds:

    - zip format: the records unpack to more than the file (compressed records: a 0.8 MB file
      that inflates to a 0.8 GB storage; torch writes records stored), or the pickle is over
      :data:`MAX_PICKLE_BYTES`; torch itself checks each storage against its record's size;
    - legacy format: torch allocates each storage from the size the pickle states, so the
      storages must fit in the bytes that follow the pickles;
    - both: the pickle calls an allowlisted global that makes an object of a stated size
      (:data:`_USED_TORCH_GLOBALS`).
    """
    size = path.stat().st_size
    allowed = _torch_allowlist()
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if zipped:
        try:
            reader = torch._C.PyTorchFileReader(str(path))  # the reader torch.load uses
            sizes = {name: reader.get_record_size(name) for name in reader.get_all_records()}
            unpacked = sum(sizes.values())
            if unpacked > size:
                raise InputError(
                    f"its records unpack to {unpacked / 2**20:.0f} MiB, more than the file's "
                    f"{size / 2**20:.0f} MiB (compressed records; torch.save stores them as they are)",
                    path,
                )
            if "data.pkl" not in sizes:
                return  # torch.load says what is missing
            if sizes["data.pkl"] > MAX_PICKLE_BYTES:
                raise InputError(
                    f"its pickle is {sizes['data.pkl'] / 2**20:.0f} MiB, over the {MAX_PICKLE_BYTES / 2**20:.0f} MiB "
                    "limit (a checkpoint's pickle holds only names and numbers)",
                    path,
                )
            pickled = reader.get_record("data.pkl")
        except RuntimeError as e:
            raise _unreadable(path, e) from None
        _walk_pickle(io.BytesIO(pickled), path, allowed, [])
        return
    with open(path, "rb") as f:
        head = f.read(MAX_PICKLE_BYTES)
    stream = io.BytesIO(head)
    ids: list[Any] = []
    try:
        for _ in range(5):  # magic number, protocol version, system info, the object, its storage keys
            if stream.tell() >= len(head):
                break  # fewer pickles: torch says what is wrong
            _walk_pickle(stream, path, allowed, ids)
    except _Exhausted:
        if len(head) == MAX_PICKLE_BYTES:
            raise InputError(f"its pickles are over the {MAX_PICKLE_BYTES / 2**20:.0f} MiB limit", path) from None
        # A truncated file: torch reports it, after making what was declared before the end.
    declared: dict[Any, int] = {}
    for pid in ids:  # ('storage', storage type, key, location, numel, view)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
            continue
        try:
            itemsize = torch.serialization.StorageType(str(pid[1]).rsplit(".", 1)[-1]).dtype.itemsize
        except (KeyError, AttributeError, TypeError, ValueError):
            raise InputError(f"declares a storage of unknown type {str(pid[1])[:60]}", path) from None
        numel, key = pid[4], pid[2]
        if not isinstance(numel, int) or numel < 0 or isinstance(key, (list, dict)) or key is _OPAQUE:
            raise InputError("declares a storage with a bad size or key", path)
        declared[key] = max(declared.get(key, 0), numel * itemsize)
    total, held = sum(declared.values()), size - stream.tell()
    if total > held:
        raise InputError(
            f"declares {total / 2**20:.0f} MiB of tensor data but holds {held / 2**20:.0f} MiB (truncated or forged)",
            path,
        )


def _stub_class(qualified_name: str) -> type:
    """A new, empty class standing in for ``qualified_name``: it takes any arguments and any
    state and keeps nothing. Made per read, so no two reads share anything through it."""
    module, _, name = qualified_name.rpartition(".")

    def ignore(self: Any, *args: Any, **kwargs: Any) -> None:
        pass

    return type(name or "Stub", (), {"__module__": module or "stub", "__init__": ignore, "__setstate__": ignore})


def _not_plain_data(path: Path, error: Exception) -> InputError:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    what = f" ({found.group(1)})" if found else ""
    return InputError(f"holds Python objects other than tensors{what} that cannot be read safely", path)


def _unreadable(path: Path, error: Exception) -> InputError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return InputError(f"not a readable PyTorch checkpoint (truncated or corrupt: {reason[:120]})", path)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value if isinstance(value, (int, float, str, type(None))) else str(value)


def _parameter_count(config: NetConfig) -> int:
    """The trainable parameters of ``ScoreNet(config)``, from the config alone (nothing is built)."""
    h, e, d = config.hidden, config.embed, config.input_dim
    linear = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731
    count = linear(d, h) + linear(e, h) + 2 * h + linear(e, e) + linear(h, d)  # pre, pre_t, pre_gnorm, time, post
    count += linear(h, h) if config.cond_layer else 0
    return count + config.blocks * (2 * linear(h, h) + 2 * linear(e, h) + 4 * h)


def _net_config(shapes: dict[str, tuple[int, ...]], path: Path, *, scale_by_sigma: bool) -> NetConfig:
    """The network's config from its weights' shapes alone; refused over the width and size limits
    (:data:`MAX_HIDDEN` ... :data:`MAX_PARAMETERS`) before anything is built."""
    for key in ("pre_dense.weight", "shared_time_embed.0.weight", "post_dense.weight"):
        if key not in shapes:
            raise InputError(f"missing weight '{key}', expected DPoser ScoreModelFC parameters", path)
    for key, wanted in (("pre_dense.weight", "(hidden, 63)"), ("shared_time_embed.0.weight", "(embed, embed)")):
        if len(shapes[key]) != 2:
            raise InputError(f"weight '{key}' has shape {shapes[key]}, expected {wanted}", path)
    hidden, input_dim = shapes["pre_dense.weight"]
    if input_dim != POSE_DIM:
        raise InputError(
            f"network input is {input_dim}-d, expected {POSE_DIM} (axis-angle body pose); "
            "6D-rotation and hand/whole-body priors are not supported",
            path,
        )
    embed = shapes["shared_time_embed.0.weight"][0]
    blocks = 0
    while f"b{blocks + 1}_dense1.weight" in shapes:
        blocks += 1
    sigmas = shapes.get("sigmas")
    if sigmas is not None and len(sigmas) != 1:
        raise InputError(f"buffer 'sigmas' has shape {sigmas}, expected (num_scales,)", path)
    num_scales = sigmas[0] if sigmas is not None else 1000
    for what, value, limit in (
        ("hidden width", hidden, MAX_HIDDEN),
        ("time embedding width", embed, MAX_EMBED),
        ("residual blocks", blocks, MAX_BLOCKS),
        ("noise scales ('sigmas')", num_scales, MAX_NUM_SCALES),
    ):
        if value > limit:
            raise InputError(
                f"network has {what} {value}, over the limit of {limit} (DPoser's: hidden 1024, embedding 512, "
                "2 blocks, 1000 noise scales)",
                path,
            )
    if min(hidden, embed, num_scales) < 1:
        raise InputError(f"network has hidden width {hidden}, embedding {embed}, {num_scales} noise scales", path)
    config = NetConfig(
        input_dim=input_dim,
        hidden=hidden,
        embed=embed,
        blocks=blocks,
        cond_layer="pre_dense_cond.weight" in shapes,
        scale_by_sigma=scale_by_sigma,
        num_scales=num_scales,
    )
    if hidden % config.groups:
        raise InputError(f"hidden width {hidden} is not divisible by {config.groups} GroupNorm groups", path)
    count = _parameter_count(config)
    if count > MAX_PARAMETERS:
        raise InputError(f"network has {count:,} parameters, over the limit of {MAX_PARAMETERS:,}", path)
    return config


def _check_stored(what: str, tensor: torch.Tensor, path: Path) -> None:
    """Refuse a tensor that is not stored in full: a view with zero or overlapping strides repeats
    a few stored values over any shape (a 4 KB file then declares a network of any width)."""
    if tensor.layout != torch.strided:
        raise InputError(f"{what} is a {tensor.layout} tensor, expected a dense one", path)
    extent = 1
    for stride, size in sorted((st, n) for st, n in zip(tensor.stride(), tensor.shape) if n > 1):
        if stride < extent:
            break
        extent = stride * size
    else:
        if tensor.numel() * tensor.element_size() <= tensor.untyped_storage().nbytes():
            return
    raise InputError(
        f"{what} {tuple(tensor.shape)} is a view that repeats or overlaps its stored values (strides "
        f"{tensor.stride()}, {tensor.untyped_storage().nbytes()} bytes stored); every weight must be stored in full",
        path,
    )


def _net_from_state(state: dict[str, torch.Tensor], path: Path, *, scale_by_sigma: bool = True) -> ScoreNet:
    """Infer the network's shape from its weights, check it against the limits and the weights
    against it, then build it and load them strictly."""
    config = _net_config({k: tuple(v.shape) for k, v in state.items()}, path, scale_by_sigma=scale_by_sigma)
    net = ScoreNet(config)  # within the limits
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    state = dict(state)
    if "sigmas" not in state:  # DPoser-X may drop the buffer; it is a function of the config
        state["sigmas"] = net.sigmas.detach().clone()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else ""))
        raise InputError("weights do not match the DPoser network: " + "; ".join(parts), path)
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise InputError(f"weight '{key}' has shape {tuple(state[key].shape)}, expected {shape}", path)
    for key, value in state.items():
        _check_stored(f"weight {key!r}", value, path)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"weight '{bad[0]}' contains NaN or Inf", path)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def _copy_ema(net: ScoreNet, ema: Any, path: Path) -> None:
    """Copy EMA shadow params (a list in ``parameters()`` order) into the network."""
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    params = list(net.parameters())
    if not isinstance(shadow, (list, tuple)):
        raise InputError("EMA entry has no 'shadow_params' list", path)
    if len(shadow) != len(params):
        raise InputError(f"EMA has {len(shadow)} shadow params, the network has {len(params)}", path)
    with torch.no_grad():
        for i, (p, s) in enumerate(zip(params, shadow)):
            if not isinstance(s, torch.Tensor) or s.shape != p.shape:
                shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise InputError(f"EMA shadow param {i} has shape {shape}, expected {tuple(p.shape)}", path)
            _check_stored(f"EMA shadow param {i}", s, path)
            if not torch.isfinite(s).all():
                raise InputError(f"EMA shadow param {i} contains NaN or Inf", path)
            p.copy_(s)


# -- this project's format -------------------------------------------------------------------
def _looks_like_safetensors(head: bytes, size: int) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON header starting with '{'.
    if len(head) < 8:
        return False
    n = int.from_bytes(head, "little")
    return 0 < n < size and n < 100 * 1024**2


def _own_metadata(meta: dict[str, str], path: Path) -> tuple[NetConfig, SubVPSDE, dict[str, Any], Any]:
    """Network config, SDE, provenance and pose space from a file's metadata, checked."""
    if meta.get("format") != FORMAT_NAME:
        raise InputError(f"safetensors file without {FORMAT_NAME} metadata; not a prior saved by `dposer train`", path)
    try:
        config = NetConfig(**json.loads(meta["net_config"]))
        sde = SubVPSDE(**json.loads(meta.get("sde", "{}")))
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise InputError(f"bad metadata in checkpoint ({e})", path) from None
    numbers = (sde.beta_min, sde.beta_max, sde.T)
    if not (
        all(isinstance(v, (int, float)) and np.isfinite(v) for v in numbers)
        and 0 <= sde.beta_min < sde.beta_max
        and sde.T > 0
        and isinstance(sde.N, int)
        and sde.N >= 2
    ):
        raise InputError(
            f"bad SDE in the metadata ({meta.get('sde', '')[:80]}): expected finite 0 <= beta_min < beta_max, "
            "T > 0 and a whole N >= 2",
            path,
        )
    try:  # files from before pose spaces were recorded are body priors
        space = space_named(meta.get("pose_space", BODY_SPACE.name))
    except ValueError as e:
        raise InputError(str(e), path) from None
    return config, sde, provenance if isinstance(provenance, dict) else {"provenance": provenance}, space


def _load_own(path: Path) -> PosePrior:
    """A ``.safetensors`` prior; its metadata and every tensor's shape are checked (the limits of
    :func:`_net_config`) before any tensor is read."""
    from safetensors import SafetensorError, safe_open

    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    if header > MAX_SAFETENSORS_HEADER:
        raise InputError(
            f"its header is {header / 2**20:.0f} MiB, over the {MAX_SAFETENSORS_HEADER / 2**20:.0f} MiB limit", path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            config, sde, provenance, space = _own_metadata(f.metadata() or {}, path)
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            if "normalizer.mean" not in shapes or "normalizer.std" not in shapes:
                raise InputError("missing normaliser statistics 'normalizer.mean'/'normalizer.std'", path)
            if shapes["normalizer.mean"] != (space.dim,) or shapes["normalizer.std"] != (space.dim,):
                raise InputError(f"normaliser statistics must be finite ({space.dim},) with positive std", path)
            net_shapes = {k: v for k, v in shapes.items() if not k.startswith("normalizer.")}
            _net_config(net_shapes, path, scale_by_sigma=config.scale_by_sigma)  # refused before reading
            tensors = {k: f.get_tensor(k) for k in shapes}
    except InputError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"not a readable .safetensors checkpoint ({reason})", path) from None
    mean, std = tensors.pop("normalizer.mean"), tensors.pop("normalizer.std")
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise InputError(f"normaliser statistics must be finite ({space.dim},) with positive std", path)
    net = _net_from_state(tensors, path, scale_by_sigma=config.scale_by_sigma)
    if dataclasses.replace(net.config, dropout=config.dropout) != config:  # dropout: training only
        raise InputError("weights do not match the network config in the metadata", path)
    info = {"format": FORMAT_NAME, "path": str(path), **provenance}
    return PosePrior(net, mean, std, sde=sde, info=info, space=space)


def save_prior(prior: PosePrior, path: str | os.PathLike, *, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``prior`` as one self-contained ``.safetensors`` file (atomically: no half-written file).

    ``provenance``: JSON-serialisable facts about training (data, steps, recipe).
    """
    from safetensors.torch import save

    path = Path(path)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in prior.net.state_dict().items()}
    tensors["normalizer.mean"] = prior.mean.detach().float().cpu().contiguous()
    tensors["normalizer.std"] = prior.std.detach().float().cpu().contiguous()
    sde = prior.sde
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "net_config": json.dumps(prior.net.config.to_dict()),
        "sde": json.dumps({"beta_min": sde.beta_min, "beta_max": sde.beta_max, "N": sde.N, "T": sde.T}),
        "pose_space": prior.space.name,
        "provenance": json.dumps(provenance or {}),
    }
    with atomic_write(path) as f:
        f.write(save(tensors, metadata=meta))
    return path
