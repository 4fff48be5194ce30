"""Image grids, results.json and the progress estimate."""

import json

import jax
import numpy as np
from PIL import Image

from jaxpapers.train import metrics


def test_image_grid_tiles_row_major_with_padding():
  images = np.stack([np.full((2, 3, 1), v, np.uint8) for v in (10, 20, 30, 40, 50)])
  grid = metrics.image_grid(images, num_rows=2, pad=1)
  assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
  assert grid[1, 1, 0] == 10 and grid[1, 5, 0] == 20 and grid[4, 1, 0] == 40
  assert grid[4, 9, 0] == 255  # the empty sixth cell stays white
  assert grid[0, 0, 0] == 255  # padding


def test_save_image_grid_writes_a_png_of_floats(tmp_path):
  images = np.random.default_rng(0).uniform(size=(4, 8, 8, 3))
  path = metrics.save_image_grid(images, str(tmp_path / 'samples' / 'grid.png'), scale=2)
  picture = Image.open(path)
  assert picture.size == (2 * (2 * 9 + 1), 2 * (2 * 9 + 1)) and picture.mode == 'RGB'


def test_results_json_records_the_environment(tmp_path):
  path = metrics.write_results(str(tmp_path), {'eval': {'accuracy': np.float32(0.5)}})
  with open(path) as f:
    results = json.load(f)
  assert results['eval'] == {'accuracy': 0.5}
  assert results['jax_version'] == jax.__version__
  assert len(results['devices']) == jax.device_count() == 8


def test_progress_estimates_the_time_left(monkeypatch):
  clock = iter([0.0, 10.0])
  monkeypatch.setattr(metrics.time, 'perf_counter', lambda: next(clock))
  progress = metrics.Progress(start_step=0, total_steps=300)
  rate, eta = progress.update(100)
  assert rate == 10.0 and eta == '0:00:20'


def test_history_keeps_the_latest_record_of_each_step(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.scalars(10, {'loss': 2.0}, prefix='train/')
  writer.scalars(20, {'loss': 1.0}, prefix='train/')
  writer.scalars(20, {'accuracy': 0.5}, prefix='eval/')
  writer.scalars(20, {'loss': 1.5}, prefix='train/')  # logged again after a resume
  writer.close()
  steps, values = metrics.read_history(str(tmp_path), 'train/')['loss']
  np.testing.assert_array_equal(steps, [10, 20])
  np.testing.assert_array_equal(values, [2.0, 1.5])
  assert list(metrics.read_history(str(tmp_path), 'eval/')) == ['accuracy']
