"""The distillation experiment: a tiny teacher run, then students from its final and its early
checkpoint (ESKD); the soft-target loss is what the student trains on."""

import numpy as np
import pytest

from experiments import distill
from experiments.configs import distill as configs
from jaxpapers.errors import CheckpointError, ConfigError
from jaxpapers.train import devices, loop


def test_teacher_then_students_from_its_final_and_early_checkpoints(digits_dir, tmp_path):
  mesh = devices.make_mesh()
  teacher = configs.get_config('teacher_tiny')
  teacher.data.data_dir = digits_dir
  loop.train_and_evaluate(distill.Distill(teacher, mesh), str(tmp_path / 'teacher'))
  for step in (4, 0):
    config = configs.get_config('tiny')
    config.data.data_dir = digits_dir
    config.teacher.update(workdir=str(tmp_path / 'teacher'), step=step)
    experiment = distill.Distill(config, mesh)
    assert experiment.data.train[0]['teacher_logits'].shape == (10,)
    results = loop.train_and_evaluate(experiment, str(tmp_path / f'student_{step}'))
    train = results['train']
    assert {'soft_loss', 'hard_loss', 'accuracy'} <= set(train)
    np.testing.assert_allclose(train['loss'], 0.9 * train['soft_loss'] + 0.1 * train['hard_loss'],
                               rtol=1e-4)
    assert 0.0 <= results['eval']['accuracy'] <= 1.0
  config.teacher.step = 3
  with pytest.raises(CheckpointError, match='kept 4, 8'):
    distill.Distill(config, mesh)
  config.teacher.step = 0
  config.data.augment.random_crop_padding = 1
  with pytest.raises(ConfigError, match='augment off'):
    distill.Distill(config, mesh)
