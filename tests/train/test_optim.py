"""Learning-rate schedules and optimisers built from a config (jaxpapers/train/optim.py)."""

import ml_collections
import numpy as np
import pytest

from jaxpapers.errors import ConfigError
from jaxpapers.train import optim


def optim_config(**overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      **dict(name='momentum', learning_rate=0.1, momentum=0.9, schedule='step', warmup_steps=0,
             decay_boundaries=(5, 8), decay_factor=0.1, weight_decay=0.0),
      **overrides})


def rates(config, steps):
  schedule = optim.learning_rate_schedule(config, total_steps=10)
  return np.array([float(schedule(step)) for step in range(steps)])


def test_step_schedule_multiplies_the_rate_at_each_boundary():
  # ResNet's recipe in miniature: the rate is divided by 10 at step 5 and again at step 8.
  np.testing.assert_allclose(rates(optim_config(), 10),
                             [0.1] * 5 + [0.01] * 3 + [0.001] * 2, rtol=1e-6)


def test_step_schedule_boundaries_count_from_the_start_of_training_after_warmup():
  np.testing.assert_allclose(rates(optim_config(warmup_steps=2), 10),
                             [0.0, 0.05] + [0.1] * 3 + [0.01] * 3 + [0.001] * 2, rtol=1e-6)


@pytest.mark.parametrize('boundaries', [(), (8, 5)])
def test_step_schedule_without_increasing_boundaries_is_a_config_error(boundaries):
  with pytest.raises(ConfigError, match='decay_boundaries'):
    optim.learning_rate_schedule(optim_config(decay_boundaries=boundaries), total_steps=10)
