"""Pose completion: fill masked joints of ``pose_body`` with the prior, several hypotheses at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .optim import PAPER_COMPLETION, Adam, DPoserSchedule, prior_residual, prior_weights
from .pose_prior import PosePrior, TimeSchedule, as_tensor
from .progress import CancelFlag, NoiseFn, Progress, ProgressFn, check_cancel, cpu_copy, make_generator, should_report
from .sampling import EulerMaruyama
from .space import BODY_SPACE, PoseSpace

Solver = Literal["dposer", "dposer-paper", "dps", "scoresde"]
SOLVERS: tuple[Solver, ...] = ("dps", "dposer", "dposer-paper", "scoresde")


@dataclass(frozen=True)
class PosteriorSchedule:
    """Settings of the ``"dps"`` solver: diffusion posterior sampling (Chung et al. 2023) with
    RePaint-style resampling, optionally followed by a DPoser ``refine`` of every draw.

    ``steps`` ancestral steps over ``t = linspace(1, eps, steps + 1)`` use the prior's clean estimate
    ``x0_hat``; each is guided by ``guidance * grad ||obs - x0_hat||`` on the observed dims (one
    backward pass through the network; the step is clipped to ``max_guidance_step`` per pose) and
    redone ``resample`` times after re-noising one step back. Hypothesis 0 is the consensus (mean,
    in model space) of ``max(H - 1, consensus_draws)`` draws, the best single answer under the
    prior; hypotheses 1.. are individual draws.
    """

    steps: int = 50
    resample: int = 2
    guidance: float = 2.0
    max_guidance_step: float = 2.0
    eps: float = 1e-3
    consensus_draws: int = 10
    refine: DPoserSchedule | None = None

    @classmethod
    def for_prior(cls, prior: PosePrior) -> PosteriorSchedule:
        """The settings a checkpoint recommends (``posterior_schedule`` in its provenance), else ours."""
        tuned = dict(prior.info.get("posterior_schedule") or {})
        if isinstance(tuned.get("refine"), dict):
            tuned["refine"] = DPoserSchedule(**tuned["refine"])
        return cls(**{k: v for k, v in tuned.items() if k in cls.__dataclass_fields__})

    @property
    def total(self) -> int:
        return self.steps * self.resample + (self.refine.total if self.refine is not None else 0)


@dataclass
class CompletionResult:
    """``pose_body: (N, H, D)`` with observed dims copied exactly; ``mask: (D,)`` or ``(N, D)``,
    True where the pose was completed (``D = prior.space.dim``, 63 for the body)."""

    pose_body: torch.Tensor
    mask: torch.Tensor


def make_mask(
    *, part: str | None = None, joints: tuple[int, ...] | list[int] | None = None, space: PoseSpace = BODY_SPACE
) -> torch.Tensor:
    """``(space.dim,)`` bool mask, True on the dims to complete, from a part name or a joint list
    (indices into ``space.joint_names``)."""
    if (part is None) == (joints is None):
        raise ValueError("give exactly one of part= or joints=")
    return torch.from_numpy(space.joint_mask(space.part(part) if part is not None else tuple(joints)))


MAX_BATCH_ROWS = 4096
"""Solver rows (pose x hypothesis or draw) solved together by :func:`complete` by default."""


def pose_seed(seed: int, index: int) -> int:
    """The seed of pose ``index``'s noise in a completion seeded with ``seed`` (``seed`` for pose 0)."""
    return seed if index == 0 else (seed + index * 0x9E3779B97F4A7C15) % 2**64


class PoseNoise:
    """Standard-normal draws from one generator per pose: ``noise((P * k, D))`` gives pose ``p`` rows
    ``p * k .. p * k + k - 1`` from its own generator, so what a pose draws does not depend on the
    poses batched with it."""

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.gens = [make_generator(s, device) for s in seeds]
        self.device = device

    def __call__(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        rows, dim = shape
        out = torch.empty(rows, dim, device=self.device)
        for gen, block in zip(self.gens, out.view(len(self.gens), rows // len(self.gens), dim)):
            block.normal_(generator=gen)  # the values torch.randn(block.shape, generator=gen) gives
        return out


def complete(
    prior: PosePrior,
    pose_body: torch.Tensor,
    mask: torch.Tensor,
    *,
    hypotheses: int = 10,
    solver: Solver = "dps",
    schedule: DPoserSchedule | PosteriorSchedule | None = None,
    steps: int = 1000,
    seed: int | None = None,
    init: Literal["noise", "pose"] = "noise",
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
    max_batch_rows: int = MAX_BATCH_ROWS,
    noise: NoiseFn | None = None,
) -> CompletionResult:
    """Complete the masked dims of ``pose_body: (N, D)`` (axis-angle, ``D = prior.space.dim``);
    ``mask: (D,)`` or ``(N, D)``, True = unknown. Returns ``H = hypotheses`` completions per pose, the
    hypotheses of many poses solved together in one batch (see the chunks below).

    ``solver="dposer"``: DPoser's optimisation with the truncated ``schedule`` (default: what the
    checkpoint recommends, see ``DPoserSchedule.for_prior``); the prior term uses a
    detached one-step estimate, so each step costs one network forward pass and no backward pass.
    ``solver="dps"`` (default): diffusion posterior sampling guided by the observation
    (``PosteriorSchedule``; default what the checkpoint recommends). Hypothesis 0 is the consensus
    of the draws, the others are draws: more diverse than the optimisation, and both the best-of-H
    and the single answer are closer to the truth on AMASS val (see checkpoints/README.md); one
    guided step costs a forward and a backward pass, 100 of them about what DPoser's 200 cost.
    ``solver="dposer-paper"``: the original code's optimisation exactly (``DPoserComp.optimize`` in
    ``run/completion.py``, checked against outputs of that code in ``tests/data/dposer_original``):
    its staircase time grid (``PAPER_COMPLETION``, t = 0.201 - 0.001 k), one random start shared
    by all hypotheses of a pose (they differ only by the prior's noise draws) and its loss averaged
    over the whole batch of poses (Adam's ``eps`` then acts on a gradient ``P`` times smaller, for
    ``P`` poses per chunk). ``"dposer"`` differs in those three (README, "Faithful to DPoser").
    ``solver="scoresde"``: ScoreSDE's PC sampler over ``steps`` steps with inpainting as the
    original intends it (``sampling.py``'s imputation, task ``'completion'``): before the network
    and again after the Euler-Maruyama step, the observed dims are replaced by the observation
    forward-noised to the step's time ``t_i``. (The original's shipped ``completion2`` demo passes a
    task name for which the replacement never fires, so it never sees the observation.)
    ``init`` (dposer solvers): masked dims start from N(0, 1) noise in model space (DPoser), or from
    ``pose_body`` itself to refine a pose rather than re-imagine the masked part.

    Poses are solved in chunks of at most ``max_batch_rows`` solver rows (a pose has ``H`` rows,
    ``max(H - 1, consensus_draws)`` for dps), so the memory of the solve does not grow with ``N``;
    only the returned ``(N, H, D)`` float32 tensor does. Every pose draws its noise from its own
    generator (pose ``i`` seeded with ``pose_seed(seed, i)``; pose 0 with ``seed`` itself), so a
    pose's completions depend on ``seed``, its index and itself only: not on the other poses, on
    ``N`` or on the chunking. With more poses than one chunk holds, ``callback`` streams the chunk
    being solved (``extra["poses"] = (start, stop)``) and counts steps over all chunks.
    ``noise``: a function ``shape -> standard normal draws`` that replaces those generators (to feed
    recorded random numbers, e.g. the original code's, in the order the solver draws them).
    """
    device, dim = prior.device, prior.space.dim
    pose_body = as_tensor(pose_body, device)
    if pose_body.ndim != 2 or pose_body.shape[1] != dim:
        raise ValueError(f"pose_body must be (N, {dim}), got {tuple(pose_body.shape)}")
    n = pose_body.shape[0]
    masked = torch.as_tensor(mask, dtype=torch.bool, device=device).expand(n, dim)
    if hypotheses < 1:
        raise ValueError("hypotheses must be >= 1")
    if max_batch_rows < 1:
        raise ValueError("max_batch_rows must be >= 1")
    expected = {"dposer": DPoserSchedule, "dposer-paper": DPoserSchedule, "dps": PosteriorSchedule}.get(solver)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    if schedule is not None and not isinstance(schedule, expected or ()):
        raise ValueError(f"schedule {type(schedule).__name__} does not fit solver {solver!r}")
    if init != "noise" and solver not in ("dposer", "dposer-paper"):
        raise ValueError("init='pose' needs a dposer solver")
    if solver == "dps":
        schedule = schedule if schedule is not None else PosteriorSchedule.for_prior(prior)
        rows, total = max(hypotheses - 1, schedule.consensus_draws, 1), schedule.total
    elif solver == "dposer":
        schedule = schedule if schedule is not None else DPoserSchedule.for_prior(prior)
        rows, total = hypotheses, schedule.total
    elif solver == "dposer-paper":
        schedule = schedule if schedule is not None else PAPER_COMPLETION
        rows, total = hypotheses, schedule.total
    else:
        rows, total = hypotheses, steps
    chunk = max(1, max_batch_rows // rows)  # poses per chunk
    chunks = range(0, n, chunk)
    base_seed = torch.Generator().seed() if seed is None else seed
    out = torch.empty(n, hypotheses, dim)
    for c, start in enumerate(chunks):
        stop = min(start + chunk, n)
        draw = noise or PoseNoise([pose_seed(base_seed, i) for i in range(start, stop)], device)

        def report(step: int, _total: int, t: float, x: torch.Tensor, start=start, stop=stop, c=c) -> None:
            step, all_steps = c * total + step, len(chunks) * total
            if callback is not None and should_report(step, all_steps, callback_every):
                pose = _to_output(prior, x, pose_body[start:stop], masked[start:stop], hypotheses)
                extra = {"poses": (start, stop)} if len(chunks) > 1 else {}
                callback(Progress("complete", step, all_steps, t, cpu_copy(pose), extra))

        out[start:stop] = _complete_chunk(prior, pose_body[start:stop], masked[start:stop], hypotheses, solver,
                                          schedule, steps, draw, init, report, cancel).cpu()
    return CompletionResult(pose_body=out, mask=torch.as_tensor(mask, dtype=torch.bool).cpu())


def _to_output(prior, x: torch.Tensor, pose_body: torch.Tensor, masked: torch.Tensor, hypotheses: int):
    """Model-space rows ``(P * H, D)`` -> ``(P, H, D)`` axis-angle with the observed dims of ``pose_body`` exact."""
    pose = prior.denormalize(x).reshape(pose_body.shape[0], hypotheses, -1)
    return torch.where(masked[:, None, :], pose, pose_body[:, None, :])


def _complete_chunk(prior, pose_body, masked, hypotheses: int, solver: Solver, schedule, steps: int,
                    noise: NoiseFn, init: str, report, cancel) -> torch.Tensor:
    """``(P, H, D)`` completions of the ``P`` poses ``pose_body`` (see :func:`complete`)."""
    if solver == "dps":  # needs autograd through the network: no inference mode
        with torch.no_grad():
            x = _posterior_solve(prior, pose_body, masked, hypotheses, schedule, noise, report, cancel)
            return _to_output(prior, x, pose_body, masked, hypotheses)
    with torch.inference_mode():
        # Flatten (pose, hypothesis) into one batch: row r = pose r // H, hypothesis r % H.
        obs = prior.normalize(pose_body).repeat_interleave(hypotheses, dim=0)
        masked_rows = masked.repeat_interleave(hypotheses, dim=0)
        if solver in ("dposer", "dposer-paper"):
            start = None if init == "noise" else obs
            paper = solver == "dposer-paper"
            x = _dposer_solve(prior, obs, masked_rows, schedule, noise, report, cancel, start,
                              shared_start=hypotheses if paper else 1, batch_mean=paper)
        else:
            x = _scoresde_solve(prior, obs, masked_rows, steps, noise, report, cancel)
        return _to_output(prior, x, pose_body, masked, hypotheses)


def _dposer_solve(prior, obs, masked, schedule: DPoserSchedule, noise, report, cancel, start=None,
                  step0: int = 0, total: int | None = None, *, shared_start: int = 1,
                  batch_mean: bool = False) -> torch.Tensor:
    """DPoser's optimisation of the rows ``obs: (B, D)``. ``shared_start = H``: each run of ``H``
    rows (a pose's hypotheses) starts from its first row's draw (the original's one start);
    ``batch_mean``: the loss is averaged over all ``B / H`` poses too (the original's batch mean),
    not per row."""
    device = obs.device
    observed = (~masked).float()
    init = noise(obs.shape) if start is None else start
    if shared_start > 1:
        init = init.reshape(-1, shared_start, obs.shape[1])[:, :1].expand(-1, shared_start, -1).reshape(obs.shape)
    x = torch.where(masked, init, obs)
    times = torch.as_tensor(schedule.times(), dtype=torch.float32, device=device)
    sched = prior.schedule(times)
    weight = prior_weights(sched)
    adam = Adam(schedule.lr)
    inv_dim = 1.0 / obs.shape[1]  # per-sample mean over the pose dims keeps hypotheses independent
    if batch_mean:
        inv_dim /= obs.shape[0] // shared_start
    for k in range(schedule.total):
        check_cancel(cancel)
        it = k // schedule.steps_per_iter
        residual = prior_residual(sched, k, x, noise(x.shape))
        grad = (2.0 * inv_dim) * ((100.0 / (1 + it)) * observed * (x - obs) + (0.1 * (it + 1)) * weight[k] * residual)
        x = adam.step(x, grad)
        report(step0 + k + 1, total or schedule.total, float(times[k]), x)
    return x


class _Inpainting:
    """ScoreSDE's inpainting as the original intends it (``get_imputation_update_fn`` in DPoser's
    ``sampling.py``, task ``'completion'``): every update of the sampler (its corrector, "none" in
    DPoser's config, then its predictor) is followed by putting the observed dims back,
    forward-noised to the step's time ``t_i``: ``alpha_i obs + std_i z``."""

    def __init__(self, predictor: EulerMaruyama, obs: torch.Tensor, masked: torch.Tensor, noise: NoiseFn):
        self.predictor, self.obs, self.masked, self.noise = predictor, obs, masked, noise

    def _observed(self, x: torch.Tensor, i: int) -> torch.Tensor:
        sched = self.predictor.sched
        return torch.where(self.masked, x, sched.alpha[i] * self.obs + sched.std[i] * self.noise(x.shape))

    def step(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictor's ``(x, x_mean)`` from ``x`` with its observed dims put back at ``t_i``
        (after the corrector), and ``x``'s put back again after the step (``x_mean``'s are not)."""
        x, x_mean = self.predictor.step(self._observed(x, i), i)
        return self._observed(x, i), x_mean


def _scoresde_solve(prior, obs, masked, steps: int, noise, report, cancel, eps: float = 1e-3) -> torch.Tensor:
    device = obs.device
    grid = torch.linspace(prior.sde.T, eps, steps, device=device)
    stepper = _Inpainting(EulerMaruyama(prior, grid, noise=noise), obs, masked, noise)
    dt = 1.0 / steps
    x = noise(obs.shape)
    x_mean = x
    for i in range(steps):
        check_cancel(cancel)
        x, x_mean = stepper.step(x, i)
        report(i + 1, steps, float(max(grid[i] - dt, 0.0)), x_mean if i == steps - 1 else x)
    return x_mean


def _guided_x0(sched: TimeSchedule, i: int, x: torch.Tensor, obs: torch.Tensor, observed: torch.Tensor):
    """``x0_hat (B, D)`` at the ``i``-th time and the gradient of ``||observed * (obs - x0_hat)||``
    (per row) with respect to ``x``."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0 = sched.x0_hat(xg, i)
        misfit = ((obs - x0) * observed).square().sum(1).add(1e-12).sqrt()
        (grad,) = torch.autograd.grad(misfit.sum(), xg)
    return x0.detach(), grad


def _posterior_solve(prior, pose_body, masked, hypotheses: int, post: PosteriorSchedule, noise, report,
                     cancel) -> torch.Tensor:
    """``(N * H, D)`` model-space completions, row ``r`` = pose ``r // H``: hypothesis 0 the
    consensus of the draws, the rest draws (see ``PosteriorSchedule``)."""
    device = pose_body.device
    n = pose_body.shape[0]
    draws = max(hypotheses - 1, post.consensus_draws, 1)
    obs = prior.normalize(pose_body).repeat_interleave(draws, dim=0)
    masked_rows = masked.repeat_interleave(draws, dim=0)
    observed = (~masked_rows).float()
    grid = torch.linspace(prior.sde.T, post.eps, post.steps + 1, device=device)
    sched = prior.schedule(grid)
    alpha, var = sched.alpha, sched.std**2

    def shown(x: torch.Tensor) -> torch.Tensor:  # what the stream shows: H rows per pose
        x = x.reshape(n, draws, -1)
        keep = x[:, : hypotheses - 1] if hypotheses > 1 else x[:, :0]
        return torch.cat([x.mean(1, keepdim=True), keep], 1).reshape(n * hypotheses, -1)

    total = post.total
    x = noise(obs.shape)
    done = 0
    for i in range(post.steps):
        a = alpha[i] / alpha[i + 1]  # forward step t_{i+1} -> t_i: x_i = a x_{i+1} + sqrt(v) z
        v = var[i] - a**2 * var[i + 1]
        for u in range(post.resample):
            check_cancel(cancel)
            x0, grad = _guided_x0(sched, i, x, obs, observed)
            if i < post.steps - 1:  # ancestral step to t_{i+1} from q(x_{i+1} | x_i, x0_hat)
                mean = (a * var[i + 1] / var[i]) * x + (alpha[i + 1] * v / var[i]) * x0
                nxt = mean + (v * var[i + 1] / var[i]).sqrt() * noise(x.shape)
            else:
                nxt = x0
            step = post.guidance * grad
            norm = step.norm(dim=1, keepdim=True)
            nxt = nxt - step * (post.max_guidance_step / norm.clamp_min(post.max_guidance_step))
            if u < post.resample - 1:  # RePaint: back to t_i and redo the step
                x = a * nxt + v.sqrt() * noise(x.shape)
            else:
                x = nxt
            done += 1
            report(done, total, float(grid[i + 1]), shown(x0))
    if post.refine is not None:
        def refine_report(step: int, total: int, t: float, x: torch.Tensor) -> None:
            report(step, total, t, shown(x))

        x = _dposer_solve(prior, obs, masked_rows, post.refine, noise, refine_report, cancel, start=x,
                          step0=done, total=total)
    return shown(x)
