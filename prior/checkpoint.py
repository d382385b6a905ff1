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
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import zipfile
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
    return prior.to(dev)


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
    """
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


def _net_from_state(state: dict[str, torch.Tensor], path: Path, *, scale_by_sigma: bool = True) -> ScoreNet:
    """Infer the network's shape from its weights, build it and load them strictly."""
    for key in ("pre_dense.weight", "shared_time_embed.0.weight", "post_dense.weight"):
        if key not in state:
            raise InputError(f"missing weight '{key}', expected DPoser ScoreModelFC parameters", path)
    hidden, input_dim = state["pre_dense.weight"].shape
    if input_dim != POSE_DIM:
        raise InputError(
            f"network input is {input_dim}-d, expected {POSE_DIM} (axis-angle body pose); "
            "6D-rotation and hand/whole-body priors are not supported",
            path,
        )
    embed = state["shared_time_embed.0.weight"].shape[0]
    blocks = 0
    while f"b{blocks + 1}_dense1.weight" in state:
        blocks += 1
    sigmas = state.get("sigmas")
    config = NetConfig(
        input_dim=input_dim,
        hidden=hidden,
        embed=embed,
        blocks=blocks,
        cond_layer="pre_dense_cond.weight" in state,
        scale_by_sigma=scale_by_sigma,
        num_scales=sigmas.shape[0] if sigmas is not None else 1000,
    )
    if hidden % config.groups:
        raise InputError(f"hidden width {hidden} is not divisible by {config.groups} GroupNorm groups", path)
    net = ScoreNet(config)
    expected = net.state_dict()
    state = dict(state)
    if sigmas is None:  # DPoser-X may drop the buffer; it is a function of the config
        state["sigmas"] = expected["sigmas"]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else ""))
        raise InputError("weights do not match the DPoser network: " + "; ".join(parts), path)
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise InputError(
                f"weight '{key}' has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}", path
            )
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


def _load_own(path: Path) -> PosePrior:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"not a readable .safetensors checkpoint ({str(e).splitlines()[0]})", path) from None
    if meta.get("format") != FORMAT_NAME:
        raise InputError(f"safetensors file without {FORMAT_NAME} metadata; not a prior saved by `dposer train`", path)
    try:
        config = NetConfig(**json.loads(meta["net_config"]))
        sde = SubVPSDE(**json.loads(meta.get("sde", "{}")))
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise InputError(f"bad metadata in checkpoint ({e})", path) from None
    try:  # files from before pose spaces were recorded are body priors
        space = space_named(meta.get("pose_space", BODY_SPACE.name))
    except ValueError as e:
        raise InputError(str(e), path) from None
    try:
        mean, std = tensors.pop("normalizer.mean"), tensors.pop("normalizer.std")
    except KeyError:
        raise InputError("missing normaliser statistics 'normalizer.mean'/'normalizer.std'", path) from None
    if mean.shape != (space.dim,) or std.shape != (space.dim,) or not (std > 0).all():
        raise InputError(f"normaliser statistics must be ({space.dim},) with positive std", path)
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
