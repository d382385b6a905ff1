"""`dposer-view`: the app object (server, worker, shared resources, per-tab sessions) and its CLI."""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro
import viser

from prior.errors import InputError
from prior.files import user_path
from prior.pose_prior import resolve_device

from . import guard
from .paths import ReadFolder
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
    read_dir: Path | None = None
    """Folder that paths typed in the page are read from (default: the folder dposer-view starts
    in); a typed path outside it is refused."""
    read_anywhere: bool = False
    """Let paths typed in the page name any file this user can read (keep it off with --host 0.0.0.0)."""
    threads: int = 1
    """CPU threads for torch. One keeps interactive jobs (small batches) fast and the page
    responsive on a busy CPU; more help large batches on an idle many-core machine."""


KEEP_SECONDS = 30 * 60  # how long a closed tab's work waits for its browser to come back
KEEP_TABS = 16  # closed tabs' work kept at most (the oldest goes first)


class ViewerApp:
    """The running viewer. ``sessions`` maps viser client ids to :class:`ClientSession` (one per
    browser tab); ``resources`` holds the prior and body shared by all; ``worker`` runs the model.

    The body model loads before the server starts (bodies are drawn at once); the prior loads on
    the worker afterwards, so the URL is up in about a second and tabs show "loading" meanwhile.
    A missing or broken prior or body model never stops the app: it reports and carries on.

    A tab that closes leaves its work (:meth:`ClientSession.keep`) for :data:`KEEP_SECONDS`, under
    its browser's cookie (:func:`guard.browser_id`); the next tab that browser opens, a reload,
    takes it back (:meth:`ClientSession.restore`). At most :data:`KEEP_TABS` are kept.
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
        read_dir: str | Path | None = None,
        read_anywhere: bool = False,
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
        self.export_dir = user_path(export_dir).resolve()
        self.read_folder = ReadFolder.at(read_dir, anywhere=read_anywhere)
        self.sessions: dict[int, ClientSession] = {}
        self._kept: dict[str, tuple[float, dict[str, Any]]] = {}  # browser id -> (time closed, its work)
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
    def _browser_of(self, client: viser.ClientHandle) -> str | None:
        connection = self.server._websock_server._live_connections.get(client.client_id)
        return guard.browser_id(getattr(connection, "request", None))

    def _on_connect(self, client: viser.ClientHandle) -> None:
        browser = self._browser_of(client)
        session = ClientSession(self, client, browser=browser)
        with self._sessions_lock:
            live = {s.browser for s in self.sessions.values()}
            self.sessions[client.client_id] = session
            now = time.monotonic()
            self._kept = {b: kept for b, kept in self._kept.items() if now - kept[0] < KEEP_SECONDS}
            kept = self._kept.pop(browser, None) if browser is not None and browser not in live else None
        if kept is not None:
            session.restore(kept[1])
            return  # the tab's own work, not the command line's files
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
            if session.browser is not None:
                with self._sessions_lock:
                    self._kept[session.browser] = (time.monotonic(), session.keep())
                    while len(self._kept) > KEEP_TABS:
                        self._kept.pop(min(self._kept, key=lambda b: self._kept[b][0]))
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
            self.resources.changed_by["prior"] = None if requester is None else weakref.ref(requester)
            self.loading_prior = False
            self._on_worker_change()
            if requester is not None:
                self._tell_all(requester, "Prior", label)

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
            res.changed_by["body"] = None if requester is None else weakref.ref(requester)
            for session in self.all_sessions():
                session.pacer.post("rebuild", session.rebuild_bodies)
            self._tell_all(requester, "Body model", label)
            self._on_worker_change()

        def on_error(message: str) -> None:
            if requester is not None:
                requester.notify("Cannot load body model", message, error=True)

        self.worker.submit(Job("load_body", self, lambda ctx: read(), on_done=on_done, on_error=on_error,
                               on_cancel=_replaced_notice(requester, "body model", name)))

    def _tell_all(self, requester: ClientSession | None, what: str, label: str) -> None:
        """Every tab uses the newly loaded prior or body: the tab that asked hears it loaded, the
        others that another tab changed it (they share one model)."""
        for session in self.all_sessions():
            if session is requester:
                session.notify(f"{what} loaded", label)
            else:
                session.notify(f"{what} changed in another tab", f"{label} is now used in every tab, this one too")

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
        read_dir=args.read_dir, read_anywhere=args.read_anywhere,
        verbose=False,
    )
    sys.stdout.write(f"dposer-view running at {app.url}\n")  # one write: stderr lines cannot split it
    sys.stdout.flush()
    for message in app.startup_errors:
        print(f"dposer-view: {message}", file=sys.stderr, flush=True)
    where = "any file" if app.read_folder.anywhere else f"files in {app.read_folder.root}"
    print(f"dposer-view: paths typed in the page read {where}; Save writes into {app.export_dir}",
          file=sys.stderr, flush=True)
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
