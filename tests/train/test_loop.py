"""The training loop in-process: sharding equality, resume, guards, eval masking, compile-once."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import classify
from experiments.configs import classify as classify_configs
from jaxpapers.data import pipeline
from jaxpapers.errors import CheckpointError, NonFiniteLossError
from jaxpapers.train import checkpoint, devices, loop


def tiny_config(digits_dir, **train):
  config = classify_configs.get_config('tiny')
  config.data.data_dir = digits_dir
  config.optim.schedule = 'constant'  # so a run of 2N steps equals N steps resumed for N more
  config.optim.warmup_steps = 0
  config.train.update(train)
  return config


def run(config, workdir, mesh=None, experiment_class=classify.Classify):
  experiment = experiment_class(config, mesh or devices.make_mesh())
  return loop.train_and_evaluate(experiment, str(workdir))


def test_eight_devices_equal_one_device_and_compile_once(digits_dir, tmp_path):
  assert jax.device_count() == 8
  config = tiny_config(digits_dir, steps=12, batch_size=32)
  sharded = run(config, tmp_path / 'eight')
  single = run(config, tmp_path / 'one', mesh=devices.make_mesh(1))
  chex.assert_trees_all_close(checkpoint.load_params(tmp_path / 'eight'),
                              checkpoint.load_params(tmp_path / 'one'), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sharded['eval']['loss'], single['eval']['loss'], rtol=1e-5)
  assert sharded['train_step_compilations'] == 1
  assert sharded['status'] == single['status'] == 'finished'
  assert single['train_step_compilations'] == 1
  # Training did something: the parameters moved and the loss fell below chance (ln 10 = 2.30).
  assert sharded['eval']['loss'] < 2.2


def test_resume_on_another_device_count_equals_uninterrupted_run(digits_dir, tmp_path):
  run(tiny_config(digits_dir, steps=10), tmp_path / 'resumed')  # saved on 8 devices
  run(tiny_config(digits_dir, steps=20), tmp_path / 'resumed', mesh=devices.make_mesh(1))
  run(tiny_config(digits_dir, steps=20), tmp_path / 'straight', mesh=devices.make_mesh(1))
  chex.assert_trees_all_close(checkpoint.load_params(tmp_path / 'resumed'),
                              checkpoint.load_params(tmp_path / 'straight'), rtol=1e-5, atol=1e-6)


def test_eval_metrics_weight_out_padding(digits_dir, tmp_path):
  config = tiny_config(digits_dir, steps=10, batch_size=16)  # 360 test images: the last batch is padded
  results = run(config, tmp_path)
  params = checkpoint.load_params(tmp_path)
  test = pipeline.load_source('sklearn_digits', 'test', digits_dir)
  examples = [pipeline.image_classification_preprocess(test[i]) for i in range(len(test))]
  images = np.stack([e['image'] for e in examples])
  labels = np.array([e['label'] for e in examples])
  logits = classify.Classify(config, devices.make_mesh()).model.apply({'params': params}, images)
  accuracy = np.mean(np.argmax(logits, -1) == labels)
  np.testing.assert_allclose(results['eval']['accuracy'], accuracy, rtol=1e-6)


class DivergesAtStep7(classify.Classify):
  """The loss turns NaN from the 7th update on."""

  def train_step(self, state, batch):
    new_state, metrics = super().train_step(state, batch)
    return new_state, {**metrics, 'loss': jnp.where(state.step >= 6, jnp.nan, metrics['loss'])}


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(digits_dir, tmp_path):
  config = tiny_config(digits_dir, steps=20, checkpoint_every=5, log_every=10)
  with pytest.raises(NonFiniteLossError, match='at step 7;'):
    run(config, tmp_path, experiment_class=DivergesAtStep7)
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == 5


class MarksEveryThirdStep(classify.Classify):
  """A host-side option on every third step (as StyleGAN2's lazy R1), reported as a metric."""

  def step_options(self, step):
    return {'third': step % 3 == 0}

  def train_step(self, state, batch, third=False):
    new_state, metrics = super().train_step(state, batch)
    return new_state, {**metrics, 'third': jnp.float32(third)}


def test_step_options_reach_their_steps_and_compile_once_each(digits_dir, tmp_path):
  results = run(tiny_config(digits_dir, steps=6, log_every=6), tmp_path,
                experiment_class=MarksEveryThirdStep)
  assert results['train']['third'] == pytest.approx(2 / 6)  # steps 0 and 3 of 0..5
  assert results['train_step_compilations'] == 2


def test_corrupt_checkpoint_names_the_directory(digits_dir, tmp_path):
  run(tiny_config(digits_dir, steps=10), tmp_path)
  state_dir = tmp_path / 'checkpoints' / '10' / 'state'
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), 'r+b') as f:
        f.truncate(max(os.path.getsize(os.path.join(root, name)) // 2, 1))
  with pytest.raises(CheckpointError, match=f'{tmp_path}/checkpoints/10'):
    run(tiny_config(digits_dir, steps=20), tmp_path)


def test_checkpoint_of_another_model_is_rejected_clearly(digits_dir, tmp_path):
  run(tiny_config(digits_dir, steps=10), tmp_path)
  config = tiny_config(digits_dir, steps=20)
  config.model.name = 'digits_cnn'
  with pytest.raises(CheckpointError, match='different configuration'):
    run(config, tmp_path)


@pytest.mark.parametrize('num_devices', [1, None])
def test_the_loop_waits_for_the_device_only_to_log_checkpoint_or_evaluate(digits_dir, tmp_path,
                                                                         monkeypatch, num_devices):
  fetched = []
  fetch = loop._fetch
  monkeypatch.setattr(loop, '_fetch', lambda tree: fetched.append(tree) or fetch(tree))
  run(tiny_config(digits_dir, steps=25, log_every=10, checkpoint_every=15, eval_every=0), tmp_path,
      mesh=devices.make_mesh(num_devices))
  # start-up (the step counter), logs at 10, 20 and the last step 25 (summarised once, though it is
  # off the log interval and also a checkpoint step), the NaN check before the checkpoint at 15, and
  # the final evaluation's sums: six transfers in 25 steps.
  assert len(fetched) == 6
