"""dposer-view's pieces without a browser: skinning, rotations, worker, pacer, history, uploads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prior.body import load_body_model
from prior.errors import Cancelled, InputError
from prior.progress import Progress
from prior.rotations import axis_angle_to_matrix, matrix_to_wxyz_np, wxyz_to_matrix_np
from viewer.history import History
from viewer.pacer import Pacer
from viewer.panels.complete import part_of_joint
from viewer.panels.edit import local_rotation
from viewer.rig import BodyRig
from viewer.worker import Job, PriorWorker

from browser import wait_until


@pytest.fixture(scope="module")
def rig() -> BodyRig:
    return BodyRig(load_body_model())


def test_viser_skinning_of_the_rig_matches_the_body_model(rig, shared_data):
    """Top-4, 22-bone linear blend skinning as the browser does it = BodyModel.forward's mesh."""
    poses = np.load(shared_data / "dposer_demo_poses.npz")["pose_body"][:4].astype(np.float32)
    body = rig.body
    want = body.forward(torch.as_tensor(poses), hand_pose=body.hand_mean[None].expand(4, -1)).vertices.numpy()
    pose = rig.pose(poses)
    rot = wxyz_to_matrix_np(pose.wxyz)
    piece = rig.whole
    got = np.zeros_like(want)
    for k in range(22):
        local = np.einsum("nij,vj->nvi", rot[:, k], piece.vertices - rig.rest_joints[k]) + pose.positions[:, None, k]
        got += piece.skin_weights[None, :, k, None] * local
    assert np.abs(got - want).max() < 1e-4
    # The per-joint pieces together hold every face once.
    assert sum(len(p.faces) for p in rig.pieces) == body.faces.shape[0]
    assert all(set(p.bones) <= set(range(22)) for p in rig.pieces)


def test_a_body_sends_only_the_bones_that_changed(rig):
    import viser

    from viewer.body_handle import BodyHandle

    server = viser.ViserServer(port=0, verbose=False)
    try:
        body = BodyHandle(server.scene, "/body", rig)  # one mesh, 22 bones
        split = BodyHandle(server.scene, "/split", rig, split=True)  # one submesh per joint
        pose = np.zeros((1, 63), np.float32)
        assert body.set_pose(rig.pose(pose)) == 0  # the rest pose is what the meshes were made with
        pose[0, 3 * 17 : 3 * 18] = [0.0, -1.2, 0.0]  # bend the left elbow (SMPL-X joint 18)
        posed = rig.pose(pose)
        assert body.set_pose(posed) == 2  # the elbow turns, the wrist turns and moves
        assert split.set_pose(posed) > 0 and split.set_pose(posed) == 0
        mesh = body.meshes[0]
        assert np.allclose(mesh.bones[20].position, posed.positions[0, 20])
        assert np.allclose(mesh.bones[18].wxyz, posed.wxyz[0, 18])
    finally:
        server.stop()


def test_numpy_rig_fk_matches_the_body_models_joints(rig):
    poses = np.random.default_rng(3).normal(0, 0.5, (5, 63)).astype(np.float32)
    roots = np.random.default_rng(4).normal(0, 1.0, (5, 3)).astype(np.float32)
    got = rig.pose(poses, root_orient=roots)
    want = rig.body.joints(torch.as_tensor(poses), global_orient=torch.as_tensor(roots))[:, :22].numpy()
    assert np.abs(got.positions - want).max() < 1e-5
    # and the world rotations are those the body's own torch FK gives
    rot = axis_angle_to_matrix(torch.as_tensor(np.concatenate([roots, poses], 1).reshape(5, 22, 3)).double())
    assert np.allclose(wxyz_to_matrix_np(got.wxyz)[:, 1], (rot[:, 0] @ rot[:, 1]).numpy(), atol=1e-6)


def test_rotation_conversions_round_trip():
    rng = np.random.default_rng(0)
    aa = rng.normal(0, 1.0, (100, 3))
    rot = axis_angle_to_matrix(torch.as_tensor(aa)).numpy()
    assert np.allclose(wxyz_to_matrix_np(matrix_to_wxyz_np(rot)), rot, atol=1e-9)


def test_gizmo_rotation_sets_the_joints_world_rotation(rig):
    pose = np.random.default_rng(1).normal(0, 0.3, 63).astype(np.float32)
    current = rig.pose(pose[None])
    target = matrix_to_wxyz_np(wxyz_to_matrix_np(np.array([0.9, 0.3, -0.2, 0.1])))
    edited = local_rotation(pose, current.rotations[0], 18, target)
    after = rig.pose(edited[None])
    assert np.allclose(np.abs(after.wxyz[0, 18] @ target), 1.0, atol=1e-6)
    changed = np.flatnonzero(np.abs(edited - pose) > 1e-7)
    assert set(changed // 3) == {17}, "only the edited joint's rotation changes"


def test_clicked_joint_resolves_to_its_part():
    assert part_of_joint(3) == "left_leg" and part_of_joint(15) == "left_arm" and part_of_joint(5) == "trunk"
    assert part_of_joint(14) == "head"


def test_history_undo_redo():
    h = History(np.zeros(63))
    h.push(np.ones(63), "a")
    h.push(2 * np.ones(63), "b")
    assert np.allclose(h.undo(), 1) and np.allclose(h.undo(), 0) and not h.can_undo
    assert np.allclose(h.redo(), 1)
    h.push(3 * np.ones(63), "c")
    assert not h.can_redo and h.label == "c"


def test_pacer_applies_only_the_newest_update():
    pacer = Pacer(max_hz=30)
    seen: list[int] = []
    gate = threading.Event()
    pacer.post("x", lambda: gate.wait(5))  # hold the display thread
    time.sleep(0.05)
    for i in range(50):
        pacer.post("x", lambda i=i: seen.append(i))
    gate.set()
    deadline = time.monotonic() + 5
    while not (seen and pacer.idle()) and time.monotonic() < deadline:
        time.sleep(0.01)
    pacer.stop()
    assert seen == [49]


def test_pacer_sends_a_frames_bone_writes_together_after_computing():
    import contextlib

    from viewer.bones import queue_write

    log: list[str] = []

    @contextlib.contextmanager
    def atomic():
        log.append("atomic start")
        yield
        log.append("atomic end")

    pacer = Pacer(max_hz=60, frame=atomic)

    def draw(name: str) -> None:
        log.append(f"compute {name}")
        queue_write(lambda: log.append(f"send {name}"))

    gate = threading.Event()
    pacer.post("hold", lambda: gate.wait(5))  # hold the display thread so a and b share a frame
    time.sleep(0.05)
    pacer.post("a", lambda: draw("a"))
    pacer.post("b", lambda: draw("b"))
    gate.set()
    deadline = time.monotonic() + 5
    while "atomic end" not in log and time.monotonic() < deadline:
        time.sleep(0.01)
    pacer.stop()
    assert log == ["compute a", "compute b", "atomic start", "send a", "send b", "atomic end"]
    queue_write(lambda: log.append("direct"))  # outside a frame: at once
    assert log[-1] == "direct"


def test_worker_cancels_the_older_job_of_the_same_kind():
    worker = PriorWorker(resources=None)
    started = threading.Event()
    results: list[str] = []

    def slow(ctx):
        started.set()
        while not ctx.cancel.is_set():
            time.sleep(0.01)
        raise Cancelled("stop")

    owner = object()
    worker.submit(Job("generate", owner, slow, on_cancel=lambda: results.append("cancelled")))
    assert started.wait(5)
    worker.submit(Job("generate", owner, lambda ctx: "new", on_done=results.append))
    worker.submit(Job("broken", owner, lambda ctx: 1 / 0, on_error=results.append))
    worker.submit(Job("bad file", owner, lambda ctx: (_ for _ in ()).throw(InputError("bad", "x.npz")),
                      on_error=results.append))
    assert worker.wait_idle(10)
    worker.stop()
    assert results[:2] == ["cancelled", "new"]
    assert results[2].startswith("broken failed: ZeroDivisionError") and results[3] == "x.npz: bad"


def _stepping_job(steps: int, log: list[str], name: str, busy: list[int], *, step_s: float = 0.004):
    """A job that computes ``steps`` model steps, looking at its cancel flag after each and
    reporting every tenth (as the prior's tasks do)."""
    def run(ctx):
        for k in range(steps):
            busy.append(1)
            assert len(busy) == 1, "two jobs computed at the same time"
            time.sleep(step_s)
            log.append(name)
            busy.pop()
            if k % 10 == 9:
                ctx.report(Progress(name, k + 1, steps, 0.0, torch.zeros(1, 63)))
            ctx.cancel.is_set()  # as the prior's tasks do once per step
        return name
    return run


def test_a_tabs_short_job_runs_between_the_steps_of_another_tabs_long_one():
    """One tab's long generation no longer makes another tab's Complete wait for its end: lanes
    take turns at every step, and never compute at the same time."""
    worker = PriorWorker(resources=None)
    log: list[str] = []
    busy: list[int] = []
    done: dict[str, int] = {}
    tab_a, tab_b = object(), object()
    worker.submit(Job("generate", tab_a, _stepping_job(300, log, "generate", busy),
                      on_done=lambda r: done.setdefault("generate", len(log))))
    wait_until(lambda: len(log) >= 20, what="the long job under way")
    asked = len(log)
    worker.submit(Job("complete", tab_b, _stepping_job(5, log, "complete", busy),
                      on_done=lambda r: done.setdefault("complete", len(log))))
    assert worker.job_of(tab_b) is not None and worker.job_of(tab_a).kind == "generate"
    assert worker.wait_idle(30)
    worker.stop()
    first = log.index("complete")
    assert first - asked <= 2, f"the short job waited {first - asked} steps of the long one"
    assert done["complete"] < done["generate"] == 305  # it finished long before; the long one finished too
    assert worker.job_of(tab_a) is None and worker.running == []


def test_a_job_cancelled_while_waiting_for_its_turn_stops_at_once():
    worker = PriorWorker(resources=None)
    gate = threading.Event()
    heard: list[str] = []
    hold = worker.submit(Job("hold", object(), lambda ctx: gate.wait(10)))
    wait_until(lambda: hold.started is not None, what="the other job computing")
    tab = object()
    job = worker.submit(Job("complete", tab, lambda ctx: "ran", on_done=heard.append,
                            on_cancel=lambda: heard.append("cancelled")))
    wait_until(lambda: worker.job_of(tab) is job and job.started is None, what="the job waiting")
    worker.cancel(tab)
    wait_until(lambda: heard, timeout=5, what="the cancel heard")
    assert heard == ["cancelled"] and not gate.is_set()
    gate.set()
    assert worker.wait_idle(10)
    worker.stop()


def test_an_uploaded_checkpoint_replaced_before_it_loads_leaves_no_file_and_says_so(tmp_path):
    """A checkpoint upload whose load job was replaced before it ran left its temporary file (up
    to 512 MiB) and said nothing: the file now exists only while the job reads it."""
    import glob
    import tempfile

    from viser import UploadedFile

    from viewer.app import ViewerApp

    pattern = str(Path(tempfile.gettempdir()) / "dposer-view-upload-*")
    before = set(glob.glob(pattern))
    app = ViewerApp(port=0, verbose=False, export_dir=tmp_path)
    try:
        class Tab:  # what the load reports to: the session's notify
            messages: list[tuple[str, str]] = []

            def notify(self, title: str, body: str, *, error: bool = False) -> None:
                self.messages.append((title, body))

        tab = Tab()
        gate = threading.Event()
        app.worker.submit(Job("hold", object(), lambda ctx: gate.wait(10)))  # the worker is busy
        garbage = UploadedFile("first.pth", b"\x80\x02 not a checkpoint")
        app.switch_prior(requester=tab, upload=garbage)
        app.switch_prior(requester=tab, upload=UploadedFile("second.pth", b"\x80\x02 not one either"))
        gate.set()
        assert app.worker.wait_idle(60)
        assert ("Prior not loaded", "loading first.pth was replaced by a newer load request") in tab.messages
        assert any(t == "Cannot load prior" and b.startswith("second.pth: ") for t, b in tab.messages), tab.messages
        assert set(glob.glob(pattern)) <= before, "a temporary upload file was left behind"
    finally:
        app.stop()


def test_panels_follow_the_contract():
    """Every panel is a Panel with its own name and label; only the session holds the panels:
    no module reads another panel's attributes by name."""
    from pathlib import Path

    import viewer
    from viewer.panels import PANELS, Panel

    names, labels = [cls.name for cls in PANELS], [cls.label for cls in PANELS]
    assert len(set(names)) == len(names) and len(set(labels)) == len(labels)
    assert all(issubclass(cls, Panel) and cls.name != Panel.name for cls in PANELS)
    assert {cls.stage for cls in PANELS} - {None} == {"pose", "samples", "motion", "fit"}
    assert [cls for cls in PANELS if "motion" in cls.file_kinds] == [PANELS[names.index("motion")]]
    for path in Path(viewer.__file__).parent.rglob("*.py"):
        if path.name != "session.py":
            assert "panels[" not in path.read_text(), f"{path} reaches into a panel by name"


def test_exported_meshes_stand_where_they_are_shown(rig):
    """Exports place each body's mesh as the scene shows it: its frame's turn and position applied
    to the body model's mesh (feet on the grid for a body at the ground height)."""
    from prior.rotations import wxyz_to_matrix_np
    from viewer.exports import shown_vertices
    from viewer.panels.base import ShownBody

    pose = np.random.default_rng(5).normal(0, 0.3, 63).astype(np.float32)
    ground = (0.0, -rig.floor_y, 0.0)
    turn = (np.cos(0.4), np.sin(0.4), 0.0, 0.0)  # 0.8 rad about X
    placed = [ShownBody("rest", np.zeros(63, np.float32), position=ground),
              ShownBody("posed", pose, root_orient=np.array([0.0, 0.5, 0.0], np.float32),
                        transl=np.array([0.1, 0.0, 0.2], np.float32), position=(1.0, 2.0, 3.0), wxyz=turn)]
    verts = shown_vertices(rig.body, placed)
    assert abs(float(verts[0][:, 1].min())) < 1e-5, "a body at the ground height has its feet on the grid"
    body = rig.body
    with torch.no_grad():  # the hands as the viewer draws them: the model's mean hand pose
        raw = body.forward(torch.from_numpy(pose[None]), global_orient=torch.tensor([[0.0, 0.5, 0.0]]),
                           transl=torch.tensor([[0.1, 0.0, 0.2]]),
                           hand_pose=body.hand_mean[None] if body.has_hands else None).vertices[0].numpy()
    want = raw @ wxyz_to_matrix_np(np.array(turn)).T + np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(verts[1], want, atol=1e-5)


def test_the_contact_cue_darkens_under_a_foot_on_the_ground_and_goes_when_it_lifts(rig):
    import viser

    from viewer.body_handle import BodyHandle
    from viewer.contact import DARKEST

    server = viser.ViserServer(port=0, verbose=False)
    try:
        body = BodyHandle(server.scene, "/body", rig, position=(0.0, -rig.floor_y, 0.0), contact=True)
        body.set_pose(rig.pose(np.zeros((1, 63), np.float32)))
        assert body.contact.opacities == [DARKEST, DARKEST], "both feet stand on the grid"
        raised = np.zeros((1, 63), np.float32)
        raised[0, 0], raised[0, 9] = -1.2, 1.2  # the left hip flexed, the left knee bent: the foot lifts
        body.set_pose(rig.pose(raised))
        left, right = body.contact.opacities
        assert left == 0.0 and right == DARKEST
        lifted = rig.soles(rig.pose(raised))[0, 1] - rig.floor_y
        assert lifted > 0.12, f"the left sole is {lifted:.3f} m up"
        body.visible = False
        assert body.contact.opacities == [0.0, 0.0]
    finally:
        server.stop()
