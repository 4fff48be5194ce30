"""Pixel-by-pixel digits (Cooijmans et al. 2016, section 5.1) through the classify experiment."""

import json

from experiments import classify
from experiments.configs import sequential_digits as configs
from jaxpapers.train import devices, loop


def test_tiny_bn_lstm_run_keeps_per_step_statistics(tmp_path, digits_dir):
  config = configs.get_config('tiny')
  config.data.data_dir = digits_dir
  experiment = classify.Classify(config, devices.make_mesh())
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['status'] == 'finished' and results['train_step_compilations'] == 1
  assert 0.0 <= json.loads((tmp_path / 'results.json').read_text())['eval']['accuracy'] <= 1.0
  for name in ('lstm', 'bn_lstm', 'plstm', 'pbn_lstm'):
    assert configs.get_config(name).model.name.startswith('digits_pixel_')
