"""`dposer-view`: the app object (server, worker, shared resources, per-tab sessions) and its CLI."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
import viser

from prior.errors import InputError
from prior.pose_prior import resolve_device

from . import guard
from .resources import Resources, body_resource, prior_resource
from .session import ARM_SPAN_M, ClientSession, framed_view
from .worker import Job, JobContext, PriorWorker


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
        threads: int | None = 1,
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
        self.sessions: dict[int, ClientSession] = {}
        self._sessions_lock = threading.Lock()
        self.loading_prior = True
        self._last_status = 0.0
        self.worker = PriorWorker(self.resources, on_change=self._on_worker_change)
        guard.install()  # before the server starts: every request to it is checked
        self.server = viser.ViserServer(host=host, port=port, label="dposer-view", verbose=verbose)
        guard.guard_port(self.server.get_port(), guard.HostPolicy(host))
        # A new tab starts framed on the standing body as its session will frame it: the same view
        # whichever of the two cameras the browser applies last.
        position, look_at = framed_view(np.array([0.0, 0.5 * rig.height_m, 0.0]), ARM_SPAN_M, rig.height_m)
        cam = self.server.initial_camera
        cam.up = (0.0, 1.0, 0.0)
        cam.position = tuple(position)
        cam.look_at = tuple(look_at)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._load_prior_job(ckpt, requester=None, display_name=None, delete_after=False)

    # -- addresses -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.server.get_host()
        host = "localhost" if host in ("0.0.0.0", "::") else host
        return f"http://{host}:{self.port}"

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

    def _on_disconnect(self, client: viser.ClientHandle) -> None:
        with self._sessions_lock:
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.close()

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
                        display_name: str | None, delete_after: bool) -> None:
        device = self.resources.device

        def run(ctx: JobContext):
            try:
                return prior_resource(path, device)
            finally:
                if delete_after and path is not None:
                    Path(path).unlink(missing_ok=True)

        def on_done(result) -> None:
            prior, label = result
            if display_name is not None:
                label = f"{display_name} ({prior.info.get('format', '?')})"
            self.resources.prior, self.resources.prior_label, self.resources.prior_error = prior, label, None
            self.loading_prior = False
            self._on_worker_change()
            if requester is not None:
                for session in self.all_sessions():
                    session.notify("Prior loaded", label)

        def on_error(message: str) -> None:
            if display_name is not None and path is not None:
                message = message.replace(str(path), display_name)
            self.loading_prior = False
            if self.resources.prior is None:
                self.resources.prior_error = message
            self._on_worker_change()
            print(f"dposer-view: {message}", file=sys.stderr, flush=True)
            targets = [requester] if requester is not None else self.all_sessions()
            for session in targets:
                session.notify("Cannot load prior", message, error=True)

        self.worker.submit(Job("load_prior", self, run, on_done=on_done, on_error=on_error))

    def switch_prior(self, path: str | Path | None, *, requester: ClientSession | None = None,
                     display_name: str | None = None, delete_after: bool = False) -> None:
        """Load another prior on the worker; every tab uses it once it has loaded."""
        self._load_prior_job(path, requester=requester, display_name=display_name, delete_after=delete_after)

    def switch_body(self, path: str | Path | None, *, requester: ClientSession | None = None,
                    display_name: str | None = None, delete_after: bool = False) -> None:
        """Load another body model on the worker; every tab redraws its bodies with it."""

        def run(ctx: JobContext):
            try:
                return body_resource(path)
            finally:
                if delete_after and path is not None:
                    Path(path).unlink(missing_ok=True)

        def on_done(result) -> None:
            body, rig, label = result
            if display_name is not None:
                label = f"{body.kind} ({display_name})"
            res = self.resources
            res.body, res.rig, res.body_label = body, rig, label
            for session in self.all_sessions():
                session.pacer.post("rebuild", session.rebuild_bodies)
                session.notify("Body model loaded", label)
            self._on_worker_change()

        def on_error(message: str) -> None:
            if display_name is not None and path is not None:
                message = message.replace(str(path), display_name)
            if requester is not None:
                requester.notify("Cannot load body model", message, error=True)

        self.worker.submit(Job("load_body", self, run, on_done=on_done, on_error=on_error))

    def stop(self) -> None:
        guard.release_port(self.port)
        self.worker.stop()
        for session in self.all_sessions():
            session.close()
        self.server.stop()


def main(argv: list[str] | None = None) -> None:
    """The ``dposer-view`` console script."""
    args = tyro.cli(ViewerArgs, args=argv)
    app = ViewerApp(
        ckpt=args.ckpt, body_model=args.body_model, device=args.device, host=args.host, port=args.port,
        clip=args.clip, threads=args.threads, verbose=False,
    )
    sys.stdout.write(f"dposer-view running at {app.url}\n")  # one write: stderr lines cannot split it
    sys.stdout.flush()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"dposer-view: listening on {args.host}: anyone who can reach this machine can use the viewer",
              file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.stop()


if __name__ == "__main__":
    main()
