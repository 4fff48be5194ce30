"""Early-stopped teachers: "On the Efficacy of Knowledge Distillation" (Cho & Hariharan 2019,
arXiv:1910.01348).

The paper finds that more accurate teachers do not always make better students: a large network
trained to convergence can be a worse teacher for a small student than the same network stopped
early (section 5: "early-stopped teacher", with ResNet teachers on CIFAR-10 and ImageNet taken at
an earlier epoch of their training run). Its remedy, early-stopped knowledge distillation (ESKD),
also stops the distillation term early in the student's training; this module and
`experiments/distill.py` follow the early-stopped-teacher half: the teacher is an earlier
checkpoint of the same teacher run, with everything else of Hinton et al.'s recipe
(`jaxpapers.distill.hinton`) unchanged. Stopping the soft-target term part-way through the
student's run is not implemented.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxpapers.errors import CheckpointError
from jaxpapers.train import checkpoint


def saved_steps(workdir: str) -> list[int]:
  """The checkpoint steps a run keeps (its `max_to_keep` decides how many early ones survive)."""
  manager = ocp.CheckpointManager(checkpoint.checkpoint_directory(workdir))
  steps = sorted(manager.all_steps())
  manager.close()
  return steps


def load_teacher(workdir: str, step: int = 0) -> Any:
  """The Flax variables of a teacher run at checkpoint `step` (0: the latest), as jax arrays; a
  step the run did not keep is one clear error listing those it did."""
  steps = saved_steps(workdir)
  if not steps:
    raise CheckpointError(f'no checkpoint in {checkpoint.checkpoint_directory(workdir)}: train '
                          'the teacher first')
  if step and step not in steps:
    raise CheckpointError(f'the teacher run in {workdir} kept no checkpoint at step {step}; it '
                          f'kept {", ".join(map(str, steps))} (raise its train.max_to_keep)')
  return jax.tree.map(jnp.asarray, checkpoint.load_variables(workdir, step or None))
