"""Run a load in a fresh process that may allocate only a little more than it holds after its
imports: a reader that allocates what a small file declares dies there (MemoryError, or torch's
allocator error) instead of taking the test machine's memory. Also: hostile files built the way an
attacker would, streamed so that the test itself never holds what they unpack to."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

HEADROOM = 384 * 2**20  # address space beyond the post-import baseline (torch maps a lot up front)

_RUNNER = r"""
import json, resource, sys, time, traceback
import numpy, torch
import prior, prior.body, prior.checkpoint, prior.data, prior.files
from prior import InputError, load_body_model, load_prior
from prior.data import load_clip, load_joints, load_motion, load_poses

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

limit = vm_bytes() + int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
path = sys.argv[3]
start = time.perf_counter()
try:
    exec(sys.argv[1])
    outcome = "loaded"
except InputError as e:
    outcome = "InputError: " + str(e)
except BaseException as e:
    outcome = f"{type(e).__name__}: {str(e)[:300]}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"outcome": outcome, "grew": peak - before, "seconds": time.perf_counter() - start}))
"""


def bounded_load(call: str, path: Path, headroom: int = HEADROOM) -> dict:
    """Run ``call`` (Python, with ``path`` a str) in a fresh process limited to ``headroom`` bytes
    of address space beyond its imports. Returns ``outcome`` ("loaded", "InputError: <line>" or
    "<OtherError>: ..."), ``grew`` (peak RSS growth, bytes) and ``seconds``."""
    import prior

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the address space")
    here = str(Path(prior.__file__).resolve().parents[1])  # the same prior as this process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", _RUNNER, call, str(headroom), str(path)], capture_output=True,
                         text=True, cwd=Path(path).parent, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def write_zero_member(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: str = "<f4") -> None:
    """A ``.npy`` member of zeros, streamed in 4 MiB pieces (the test never holds it)."""
    chunk = bytes(4 * 2**20)
    with archive.open(name, "w", force_zip64=True) as f:
        f.write(npy_header(shape, dtype))
        left = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
