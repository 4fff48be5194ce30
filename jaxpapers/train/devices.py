"""The device mesh, shardings and multi-process start-up.

Data parallelism is expressed once, through shardings: parameters are replicated over the mesh and
every batch is split along its leading axis over the `data` axis. `jax.jit` then inserts the
collectives (gradient all-reduce, batch-norm statistics over the global batch) itself, so the same
pure step runs on one CPU, one GPU or a TPU pod.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxpapers.errors import ConfigError

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins the processes of a multi-host run (TPU VM pod workers, or processes on one machine).

  On a TPU VM every argument is discovered from the environment; on CPU pass all three.
  """
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def _ynnpack(*fusion_types: str) -> dict:
  return {'xla_cpu_experimental_ynn_fusion_type': ','.join(
      f'LIBRARY_FUSION_TYPE_{t}' for t in fusion_types)}


_YNNPACK_ALL = _ynnpack('INDIVIDUAL_CONVOLUTION', 'INDIVIDUAL_DOT', 'REDUCE', 'ELTWISE')
_ONEDNN_CONVOLUTIONS = {'xla_cpu_use_onednn': True, 'xla_cpu_experimental_onednn_custom_call': True}


# Named XLA:CPU kernel choices for a run's compiled steps (`config.train.cpu_kernels`; measured in
# WORKSPACE.md, issue 16). None is XLA's defaults: YNNPACK convolutions, dots and reductions, XLA's
# own loops for element-wise work.
# - 'ynnpack_eltwise' hands element-wise ops to YNNPACK too. XLA:CPU fuses element-wise producers
#   (batch norm, ReLU, residual sums) into the transposed copies a convolution's weight gradient
#   reads, recomputing a residual stage's batch norms with strided reads (43% of ResNet-20's step
#   time); YNNPACK fusions stay out of those copies (ResNet-20 1.16-1.23x faster). Elsewhere
#   YNNPACK's materialised broadcasts and split element-wise chains cost 1.07-1.25x.
# - 'onednn' computes convolutions with oneDNN's kernels (XLA's oneDNN custom calls) and leaves
#   YNNPACK only the reductions: 1.1-1.7x XLA's defaults on single forward convolutions, DDPM
#   sampling 1.20x, a DCGAN round 1.06x; ResNet-20's training step 0.74x of its YNNPACK choice,
#   CLIP's 0.39x (its matmuls). Without YNNPACK, XLA:CPU splits large reductions into slow
#   reduce-windows (a batch norm's statistics 7-11x slower); with its reductions, DDPM sampling and
#   a DCGAN round are another 1.06-1.09x faster.
# - 'onednn_ynnpack' is 'ynnpack_eltwise' with oneDNN's convolutions enabled too. YNNPACK keeps the
#   ops it takes; oneDNN gets convolutions it leaves (in ResNet-20's step: the stem's and the
#   16-channel stage's forward and input-gradient convolutions). ResNet-20 1.06-1.10x of
#   'ynnpack_eltwise'; DDPM sampling 0.83x and a DCGAN round 0.93x of 'onednn', CLIP 0.85x of 'xla'.
CPU_KERNELS: dict[str, dict | None] = {
    'xla': None,
    'ynnpack_eltwise': _YNNPACK_ALL,
    'onednn': {**_ONEDNN_CONVOLUTIONS, **_ynnpack('REDUCE')},
    'onednn_ynnpack': {**_ONEDNN_CONVOLUTIONS, **_YNNPACK_ALL},
}


def compiler_options(cpu_kernels: str) -> dict | None:
  """`jax.jit(..., compiler_options=...)` for the named CPU kernel choice (`CPU_KERNELS`); None
  (XLA's defaults) off CPU, where GPUs and TPUs have their own fusion."""
  if cpu_kernels not in CPU_KERNELS:
    raise ConfigError(f'cpu_kernels={cpu_kernels!r}; valid: {", ".join(CPU_KERNELS)}')
  if jax.default_backend() != 'cpu':
    return None
  return CPU_KERNELS[cpu_kernels]


def run_compiler_options(train_config: Any) -> dict | None:
  """`compiler_options` of a run's `config.train.cpu_kernels`, XLA's defaults where a config built
  by hand leaves the key out (the presets all have it: `experiments.configs.select`)."""
  return compiler_options(train_config.get('cpu_kernels', 'xla'))


def make_mesh(num_devices: int | None = None) -> Mesh:
  """The data-parallel mesh over all devices, or over the first `num_devices`."""
  # Mesh(...) rather than jax.make_mesh: the latter defaults to Explicit axes, under which eager
  # indexing of sharded results raises (STACK-NOTES.md).
  return Mesh(np.asarray(jax.devices()[:num_devices]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """This process's share of the global batch; the batch must split evenly over the devices."""
  if global_batch_size % mesh.size:
    raise ConfigError(f'config.train.batch_size={global_batch_size} must be divisible by the number of '
                      f'devices ({mesh.size})')
  return global_batch_size // jax.process_count()


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Assembles each process's slice of the batch into global arrays sharded over `data`."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
