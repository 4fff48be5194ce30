"""Training-step throughput of jaxpapers models against the same model in plain PyTorch.

    python scripts/benchmark.py digits_cnn [--batch_size=64] [--steps=300]

Both sides run the same architecture, optimiser and batch size on the same in-memory batch (data
loading is excluded), after warm-up (compilation); each figure is the best of `--repeats` timed runs
of `--steps` steps. PyTorch comes from the `bench` extra (`pip install -e '.[bench]'`). Prints one
JSON line per benchmark, ready for WORKSPACE.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Callable

from absl import app, flags

_BATCH = flags.DEFINE_integer('batch_size', 64, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Timed steps per repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats; the best is reported.')

BENCHMARKS: dict[str, Callable[[], dict]] = {}


def benchmark(fn):
  BENCHMARKS[fn.__name__] = fn
  return fn


def steps_per_second(step: Callable[[], None], sync: Callable[[], None]) -> float:
  for _ in range(10):  # warm-up, compilation included
    step()
  sync()
  best = float('inf')
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      step()
    sync()
    best = min(best, time.perf_counter() - start)
  return _STEPS.value / best


@benchmark
def digits_cnn() -> dict:
  """The digits convnet of experiments/classify.py (LeNet-style, 53,002 parameters), AdamW."""
  import jax
  import numpy as np
  import torch
  from torch import nn

  from experiments import classify
  from experiments.configs import classify as configs
  from jaxpapers.train import devices

  batch_size = _BATCH.value
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(batch_size, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 10, size=batch_size).astype(np.int32)

  config = configs.get_config('digits_cnn')
  experiment = classify.Classify(config, devices.make_mesh())
  state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  train_step = jax.jit(experiment.train_step, donate_argnums=0)
  batch = jax.device_put({'image': images, 'label': labels})
  holder = {'state': state}

  def jax_step():
    holder['state'], holder['metrics'] = train_step(holder['state'], batch)

  jax_rate = steps_per_second(jax_step, lambda: jax.block_until_ready(holder['state']))

  model = nn.Sequential(
      nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
  assert sum(p.numel() for p in model.parameters()) == 53_002
  optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.learning_rate,
                                weight_decay=config.optim.weight_decay)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  y = torch.from_numpy(labels).long()

  def torch_step():
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()

  torch_rate = steps_per_second(torch_step, lambda: None)
  return {'jax_steps_per_s': jax_rate, 'torch_steps_per_s': torch_rate,
          'jax_over_torch': jax_rate / torch_rate, 'torch_version': torch.__version__,
          'torch_threads': torch.get_num_threads()}


def main(argv):
  import jax
  names = argv[1:] or list(BENCHMARKS)
  for name in names:
    if name not in BENCHMARKS:
      raise app.UsageError(f'unknown benchmark {name!r}; known: {", ".join(BENCHMARKS)}')
    result = BENCHMARKS[name]()
    result.update(benchmark=name, batch_size=_BATCH.value, device=jax.devices()[0].device_kind,
                  jax_version=jax.__version__, cpu_count=os.cpu_count(), machine=platform.machine())
    print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
