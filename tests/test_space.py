"""Pose spaces: the body space is DPoser's 21 joints, and a prior's space sizes its tasks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from prior.completion import make_mask
from prior.parts import BODY_JOINT_NAMES, PARTS, joint_mask
from prior.pose_prior import PosePrior
from prior.space import BODY_SPACE, SPACES, PoseSpace, space_named

from prior_helpers import small_random_prior


def test_body_space_is_dposers_body_pose():
    assert BODY_SPACE.name == "body" and BODY_SPACE.dim == 63 and BODY_SPACE.num_joints == 21
    assert BODY_SPACE.joint_names == BODY_JOINT_NAMES and BODY_SPACE.drives == ("body_pose",)
    assert dict(BODY_SPACE.parts) == PARTS and BODY_SPACE.part("left_arm") == (12, 15, 17, 19)
    np.testing.assert_array_equal(BODY_SPACE.joint_mask(PARTS["legs"]), joint_mask(PARTS["legs"]))
    assert space_named("body") is BODY_SPACE and SPACES == {"body": BODY_SPACE}
    assert small_random_prior().space is BODY_SPACE  # a prior without a stated space is a body prior
    hash(BODY_SPACE)  # usable as a key (frozen)


def test_bad_spaces_and_names_are_refused():
    with pytest.raises(ValueError, match="unknown pose space 'hands'; known: body"):
        space_named("hands")
    with pytest.raises(ValueError, match="unknown part 'tail'"):
        BODY_SPACE.part("tail")
    with pytest.raises(ValueError, match="not 3 x 2 joints"):
        PoseSpace(name="bad", dim=5, joint_names=("a", "b"), parts={}, drives=())
    with pytest.raises(ValueError, match="outside 0..1"):
        PoseSpace(name="bad", dim=6, joint_names=("a", "b"), parts={"p": (2,)}, drives=())
    prior = small_random_prior()
    with pytest.raises(ValueError, match=r"mean must be \(63,\)"):
        PosePrior(prior.net, torch.zeros(62), torch.ones(62))


def test_masks_follow_the_space():
    two = PoseSpace(name="two", dim=6, joint_names=("a", "b"), parts={"second": (1,)}, drives=("x",))
    assert make_mask(part="second", space=two).tolist() == [False] * 3 + [True] * 3
    assert torch.equal(make_mask(part="arms"), make_mask(part="arms", space=BODY_SPACE))
    assert dataclasses.replace(BODY_SPACE) == BODY_SPACE
