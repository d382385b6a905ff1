"""`dposer-view`: the app object (server, worker, shared resources, per-tab sessions) and its CLI."""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro
import viser

from prior.errors import InputError
from prior.pose_prior import resolve_device

from . import guard
from .resources import Resources, body_resource, prior_resource
from .session import ARM_SPAN_M, ClientSession, framed_view
from .uploads import MAX_BODY_MODEL_BYTES, MAX_CHECKPOINT_BYTES, upload_error, uploaded_to_file
from .worker import Job, PriorWorker


@dataclass
class ViewerArgs:
    """dposer-view: an interactive browser viewer around the DPoser pose prior."""

    ckpt: Path | None = None
    """Prior checkpoint (DPoser .pth, DPoser-X .ckpt, dposer-view .safetensors); default: the shipped prior."""
    body_model: Path | None = None
    """SMPL-X / SMPL-H / SMPL model file or folder; default: the licence-free mannequin."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the prior runs: auto picks CUDA when available."""
    host: str = "127.0.0.1"
    """Address to listen on; 127.0.0.1 keeps the viewer private to this machine (0.0.0.0 shares it)."""
    port: int = 8080
    """Port to listen on (the next free one if taken; 0 picks any free port)."""
    clip: Path | None = None
    """A motion clip to open in the Motion tab of every new browser tab."""
    image: Path | None = None
    """A photo to open in the Fit tab of every new browser tab (the detector finds the person's keypoints)."""
    token: str = "auto"
    """Access token the page's address must carry (``?token=...``, printed at start), so that only
    who was given the address can use the viewer: "auto" makes a random one, "none" needs none
    (anyone who can reach the port, including other users of this machine, gets in)."""
    export_dir: Path = Path("dposer-exports")
    """Folder the Save buttons write into (made when first used); the viewer writes nowhere else."""
    threads: int = 1
    """CPU threads for torch. One keeps interactive jobs (small batches) fast and the page
    responsive on a busy CPU; more help large batches on an idle many-core machine."""


class ViewerApp:
    """The running viewer. ``sessions`` maps viser client ids to :class:`ClientSession` (one per
    browser tab); ``resources`` holds the prior and body shared by all; ``worker`` runs the model.

    The body model loads before the server starts (bodies are drawn at once); the prior loads on
    the worker afterwards, so the URL is up in about a second and tabs show "loading" meanwhile.
    A missing or broken prior or body model never stops the app: it reports and carries on.
    """

    def __init__(
        self,
        *,
        ckpt: str | Path | None = None,
        body_model: str | Path | None = None,
        device: str = "auto",
        host: str = "127.0.0.1",
        port: int = 8080,
        clip: str | Path | None = None,
        image: str | Path | None = None,
        threads: int | None = 1,
        export_dir: str | Path = "dposer-exports",
        token: str | None = "auto",
        verbose: bool = True,
    ) -> None:
        self.startup_errors: list[str] = []
        if threads is not None:
            # Process-wide: with two CPU threads per op on a shared CPU, the worker's small
            # batches ran 10-50x slower (measured in benchmarks/bench_tasks.py).
            torch.set_num_threads(max(1, threads))
        if device == "cuda" and not torch.cuda.is_available():
            self.startup_errors.append("--device cuda: no CUDA device is available; running on the CPU")
            device = "cpu"
        try:
            body, rig, body_label = body_resource(body_model)
        except InputError as exc:
            self.startup_errors.append(f"{exc} (showing the mannequin instead)")
            body, rig, body_label = body_resource(None)
        self.resources = Resources(device=resolve_device(device), body=body, rig=rig, body_label=body_label)
        self.clip = Path(clip) if clip is not None else None
        self.image = Path(image) if image is not None else None
        self.export_dir = Path(export_dir).expanduser().resolve()
        self.sessions: dict[int, ClientSession] = {}
        self._sessions_lock = threading.Lock()
        self.loading_prior = True
        self._last_status = 0.0
        self.worker = PriorWorker(self.resources, on_change=self._on_worker_change)
        guard.install()  # before the server starts: every request to it is checked
        self.server = viser.ViserServer(host=host, port=port, label="dposer-view", verbose=verbose)
        self.token = guard.new_token() if token == "auto" else (None if token in (None, "", "none") else token)
        guard.guard_port(self.server.get_port(), guard.HostPolicy(host, self.token))
        # A new tab starts framed on the standing body as its session will frame it: the same view
        # whichever of the two cameras the browser applies last.
        position, look_at = framed_view(np.array([0.0, 0.5 * rig.height_m, 0.0]), ARM_SPAN_M, rig.height_m)
        cam = self.server.initial_camera
        cam.up = (0.0, 1.0, 0.0)
        cam.position = tuple(position)
        cam.look_at = tuple(look_at)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._load_prior_job(ckpt, requester=None)

    # -- addresses -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.server.get_host()
        host = "localhost" if host in ("0.0.0.0", "::") else host
        query = "" if self.token is None else f"/?token={self.token}"
        return f"http://{host}:{self.port}{query}"

    # -- sessions ------------------------------------------------------------------------------
    def _on_connect(self, client: viser.ClientHandle) -> None:
        session = ClientSession(self, client)
        with self._sessions_lock:
            self.sessions[client.client_id] = session
        for message in self.startup_errors:
            session.notify("Startup problem", message, error=True)
        if self.resources.prior is None and not self.loading_prior:
            session.notify("No prior loaded", self.no_prior_message(), error=True)
        if self.clip is not None:
            session.open_file("motion", self.clip)
        if self.image is not None:
            session.open_file("photo", self.image)

    def _on_disconnect(self, client: viser.ClientHandle) -> None:
        with self._sessions_lock:
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.close()
            del session
            # A tab's state is a web of references (GUI callbacks, panels, bodies) holding its
            # clips and meshes, and viser still holds the tab while this runs: collected just
            # after, rather than whenever the collector next happens to run (maybe never).
            collect = threading.Timer(1.0, gc.collect)
            collect.daemon = True
            collect.start()

    def all_sessions(self) -> list[ClientSession]:
        with self._sessions_lock:
            return list(self.sessions.values())

    def wait_for_session(self, timeout: float = 30.0) -> ClientSession:
        """The first connected tab's session, waiting for one (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sessions = self.all_sessions()
            if sessions:
                return sessions[0]
            time.sleep(0.02)
        raise TimeoutError("no browser tab connected")

    def _on_worker_change(self) -> None:
        for session in self.all_sessions():
            session.pacer.post("status", session.refresh_status)

    def no_prior_message(self) -> str:
        reason = self.resources.prior_error or "no checkpoint was given"
        return f"{reason}. Load a checkpoint in the Model tab (path or upload)."

    # -- switching models ----------------------------------------------------------------------
    def _load_prior_job(self, path: str | Path | None, *, requester: ClientSession | None,
                        upload: viser.UploadedFile | None = None) -> None:
        device = self.resources.device
        read = _reader(lambda p: prior_resource(p, device), path, upload, MAX_CHECKPOINT_BYTES)
        name = _display_name(path, upload)

        def on_done(result) -> None:
            prior, label = result
            if upload is not None:
                label = f"{name} ({prior.info.get('format', '?')})"
            self.resources.prior, self.resources.prior_label, self.resources.prior_error = prior, label, None
            self.loading_prior = False
            self._on_worker_change()
            if requester is not None:
                for session in self.all_sessions():
                    session.notify("Prior loaded", label)

        def on_error(message: str) -> None:
            self.loading_prior = False
            if self.resources.prior is None:
                self.resources.prior_error = message
            self._on_worker_change()
            print(f"dposer-view: {message}", file=sys.stderr, flush=True)
            targets = [requester] if requester is not None else self.all_sessions()
            for session in targets:
                session.notify("Cannot load prior", message, error=True)

        self.worker.submit(Job("load_prior", self, lambda ctx: read(), on_done=on_done, on_error=on_error,
                               on_cancel=_replaced_notice(requester, "prior", name)))

    def switch_prior(self, path: str | Path | None = None, *, requester: ClientSession | None = None,
                     upload: viser.UploadedFile | None = None) -> None:
        """Load another prior (a path; None: the shipped default; or a browser upload) on the
        worker; every tab uses it once it has loaded."""
        self._load_prior_job(path, requester=requester, upload=upload)

    def switch_body(self, path: str | Path | None = None, *, requester: ClientSession | None = None,
                    upload: viser.UploadedFile | None = None) -> None:
        """Load another body model (a path; None: the mannequin; or a browser upload) on the
        worker; every tab redraws its bodies with it."""
        read = _reader(body_resource, path, upload, MAX_BODY_MODEL_BYTES)
        name = _display_name(path, upload)

        def on_done(result) -> None:
            body, rig, label = result
            if upload is not None:
                label = f"{body.kind} ({name})"
            res = self.resources
            res.body, res.rig, res.body_label = body, rig, label
            for session in self.all_sessions():
                session.pacer.post("rebuild", session.rebuild_bodies)
                session.notify("Body model loaded", label)
            self._on_worker_change()

        def on_error(message: str) -> None:
            if requester is not None:
                requester.notify("Cannot load body model", message, error=True)

        self.worker.submit(Job("load_body", self, lambda ctx: read(), on_done=on_done, on_error=on_error,
                               on_cancel=_replaced_notice(requester, "body model", name)))

    def stop(self) -> None:
        guard.release_port(self.port)
        self.worker.stop()
        for session in self.all_sessions():
            session.close()
        self.server.stop()


def _reader(load: Callable[[Any], Any], path: str | Path | None, upload: viser.UploadedFile | None,
            max_bytes: int) -> Callable[[], Any]:
    """``load(path)``, or ``load`` of the upload written to a temporary file that exists only
    while it is read (so a load that is replaced before it runs leaves nothing behind); errors
    name the uploaded file, never the temporary one."""
    if upload is None:
        return lambda: load(path)

    def read() -> Any:
        try:
            with uploaded_to_file(upload, max_bytes=max_bytes) as tmp:
                return load(tmp)
        except InputError as exc:
            raise InputError(upload_error(exc, upload)) from None

    return read


def _display_name(path: str | Path | None, upload: viser.UploadedFile | None) -> str:
    if upload is not None:
        return Path(upload.name).name or "upload"
    return "the default" if path is None else Path(path).name


def _replaced_notice(requester: ClientSession | None, what: str, name: str) -> Callable[[], None] | None:
    """A load that a newer one replaced before it finished says so in the tab that asked for it."""
    if requester is None:
        return None
    return lambda: requester.notify(f"{what.capitalize()} not loaded",
                                    f"loading {name} was replaced by a newer load request")


def main(argv: list[str] | None = None) -> None:
    """The ``dposer-view`` console script."""
    args = tyro.cli(ViewerArgs, args=argv)
    if args.token not in ("auto", "none") and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", args.token):
        print("dposer-view: error: --token must be 16 to 128 letters, digits, '-' or '_' (or auto, or none)",
              file=sys.stderr)
        sys.exit(2)
    app = ViewerApp(
        ckpt=args.ckpt, body_model=args.body_model, device=args.device, host=args.host, port=args.port,
        clip=args.clip, image=args.image, threads=args.threads, export_dir=args.export_dir, token=args.token,
        verbose=False,
    )
    sys.stdout.write(f"dposer-view running at {app.url}\n")  # one write: stderr lines cannot split it
    sys.stdout.flush()
    if args.host not in guard.LOOPBACK_NAMES:
        who = "anyone who can reach this machine" if app.token is None else "anyone given the address above"
        print(f"dposer-view: listening on {args.host}: {who} can use the viewer", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.stop()


if __name__ == "__main__":
    main()
