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


# XLA:CPU fuses element-wise producers (batch norm, ReLU, residual sums) into the transposed
# copies its convolution kernels ask for (the weight gradient of a convolution reads its input with
# the batch axis innermost), and through a residual stage's chain of sums it recomputes every
# block's batch norm with strided reads: in ResNet-20's train step such fused transposes take 43%
# of the op time. Handing element-wise ops to YNNPACK keeps them out of those fusions (ResNet-20
# 1.16x faster, jaxlib 0.12), but costs elsewhere: YNNPACK needs its broadcasts materialised and
# splits the optimiser's long element-wise chains, so transformer, recurrent and GAN steps run
# 1.07-1.25x slower (WORKSPACE.md, issue 16). Hence an option of the run (`config.train.
# cpu_ynnpack_eltwise`), on for the batch-normed residual networks' presets only.
_CPU_YNN_FUSION_TYPES = ('INDIVIDUAL_CONVOLUTION', 'INDIVIDUAL_DOT', 'REDUCE', 'ELTWISE')


def compiler_options(ynnpack_eltwise: bool) -> dict[str, str] | None:
  """`jax.jit(..., compiler_options=...)`: with `ynnpack_eltwise` on CPU, XLA's default YNNPACK
  fusions plus element-wise ones (see above); otherwise None (XLA's defaults; GPUs and TPUs have
  their own fusion)."""
  if not ynnpack_eltwise or jax.default_backend() != 'cpu':
    return None
  return {'xla_cpu_experimental_ynn_fusion_type':
          ','.join(f'LIBRARY_FUSION_TYPE_{t}' for t in _CPU_YNN_FUSION_TYPES)}


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
