"""Console progress, TensorBoard event files, metrics.jsonl, results.json and image grids."""

from __future__ import annotations

import datetime
import json
import os
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging
from etils import epath
from PIL import Image


class MetricWriter:
  """Writes scalars to TensorBoard (`<workdir>/tensorboard`) and to `<workdir>/metrics.jsonl`.

  metrics.jsonl holds one JSON object per call, {"step", "prefix", "metrics"}, for plotting scripts
  (`read_history`); only process 0 writes.
  """

  def __init__(self, workdir: str):
    self.workdir = str(workdir)
    self._active = jax.process_index() == 0
    self._tb = None
    self._jsonl = epath.Path(workdir) / 'metrics.jsonl'
    if self._active:
      from tensorboardX import SummaryWriter  # imported here: only process 0 writes events.
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def scalars(self, step: int, scalars: Mapping[str, float], prefix: str = '') -> None:
    if not self._active:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(f'{prefix}{name}', float(value), step)
    self._tb.flush()
    record = {'step': step, 'prefix': prefix, 'metrics': {k: float(v) for k, v in scalars.items()}}
    with self._jsonl.open('a') as f:
      f.write(json.dumps(record) + '\n')

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """One [H, W, C] uint8 image (a sample grid, say) as a TensorBoard image."""
    if self._active:
      self._tb.add_image(name, image, step, dataformats='HWC')
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_history(workdir: str, prefix: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{metric: (steps, values)} from metrics.jsonl for one prefix ('train/' or 'eval/').

  A resumed run logs again the steps after its last checkpoint; the latest record of a step wins.
  """
  by_step: dict[int, dict[str, float]] = {}
  for line in (epath.Path(workdir) / 'metrics.jsonl').read_text().splitlines():
    record = json.loads(line)
    if record['prefix'] == prefix:
      by_step[record['step']] = record['metrics']
  steps = sorted(by_step)
  names = sorted({name for metrics in by_step.values() for name in metrics})
  return {name: (np.array([s for s in steps if name in by_step[s]]),
                 np.array([by_step[s][name] for s in steps if name in by_step[s]]))
          for name in names}


class Progress:
  """Steps per second over the last logging window and the time left to `total_steps`."""

  def __init__(self, start_step: int, total_steps: int):
    self._total = total_steps
    self._last_step, self._last_time = start_step, time.perf_counter()

  def restart(self, step: int) -> None:
    """Starts a new window, so time spent evaluating is not counted as training time."""
    self._last_step, self._last_time = step, time.perf_counter()

  def update(self, step: int) -> tuple[float, str]:
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = datetime.timedelta(seconds=round((self._total - step) / rate)) if rate > 0 else '?'
    return rate, str(eta)


def format_metrics(metrics: Mapping[str, float]) -> str:
  return ' '.join(f'{k} {v:.4g}' for k, v in sorted(metrics.items()))


def log_line(step: int, total: int, metrics: Mapping[str, float], rate: float, eta: str) -> None:
  logging.info('step %d/%d | %s | %.2f steps/s | ETA %s', step, total, format_metrics(metrics),
               rate, eta)


def write_results(workdir: str, results: Mapping[str, Any]) -> str:
  """Writes `<workdir>/results.json` with the run's environment added; returns the path."""
  path = epath.Path(workdir) / 'results.json'
  if jax.process_index() == 0:
    payload = dict(results)
    payload['jax_version'] = jax.__version__
    payload['devices'] = [str(d) for d in jax.devices()]
    payload['device_kind'] = jax.devices()[0].device_kind
    payload['process_count'] = jax.process_count()
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_to_json))
  return str(path)


def _to_json(x: Any) -> Any:
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  return str(x)


def image_grid(images: np.ndarray, num_rows: int | None = None, pad: int = 1) -> np.ndarray:
  """Tiles images [N, H, W, C] (floats in [0, 1] or uint8) into one uint8 image [rows*H, cols*W, C]."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    images = (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
  n, h, w, c = images.shape
  rows = num_rows or int(np.ceil(np.sqrt(n)))
  cols = int(np.ceil(n / rows))
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_image_grid(images: np.ndarray, path: str, num_rows: int | None = None, scale: int = 1) -> str:
  """Saves `image_grid(images)` as a PNG, enlarged `scale` times with nearest-neighbour pixels."""
  return save_png(image_grid(images, num_rows), path, scale)


def save_png(grid: np.ndarray, path: str, scale: int = 1) -> str:
  """Saves a uint8 [H, W, C] image as a PNG, enlarged `scale` times with nearest-neighbour pixels."""
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if scale != 1:
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:
    picture.save(f, format='PNG')
  return str(path)
