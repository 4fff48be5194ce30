"""The StyleGAN2 + ADA experiment: a tiny run end to end on 8 devices; p moves and R1 / path length run."""
import jax
import numpy as np

from experiments import stylegan2
from experiments.configs import stylegan2 as configs
from jaxpapers.train import devices, loop


def test_tiny_run_end_to_end_with_ada_r1_and_path_length(digits_dir, tmp_path):
  config = configs.get_config('tiny')
  config.data.data_dir = digits_dir
  config.ada.speed_images = 100  # p moves by 8 / 100 per round
  experiment = stylegan2.StyleGAN2(config, devices.make_mesh())
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  # Rounds 0 and 2 regularise (R1 and path length every 2 rounds), 1 and 3 do not: two programs.
  assert results['train_step_compilations'] == 2
  train = results['train']
  assert np.isfinite(train['loss']) and np.isfinite(train['r1'])
  # r_t in {-1, ..., 1}; p moved off 0 or stayed clipped there, by multiples of 0.08.
  assert -1 <= train['r_t'] <= 1
  assert 0 <= train['ada_p'] <= 1
  assert (tmp_path / 'samples' / 'step_4.png').exists()
  state = experiment.init(jax.random.key(0))
  assert set(state.buffers) == {'p', 'pl_mean'}
