"""Training throughput of a zoo model on this machine's devices, and the fraction of peak FLOP/s.

    python scripts/throughput.py --model=resnet50 --batch_size=256 --dtype=bfloat16
    python scripts/throughput.py --model=gpt2_small --batch_size=16 --seq_len=1024 --dtype=bfloat16

One jitted training step (forward, backward, SGD with momentum; softmax cross-entropy on random
labels or next tokens) on a batch held on the devices, data-parallel over every device with the
parameters replicated, as `jaxpapers.train` runs it. `--dtype=bfloat16` keeps float32 master
parameters and optimizer state and runs the forward and backward passes in bfloat16 (parameters
and inputs cast inside the step). Reported, as one JSON line: examples/s (images or sequences) and
tokens/s for language models; the model FLOPs of a step, counted as 3x the forward pass's matrix
products and convolutions (`forward_matmul_flops`: 2 multiply-adds per output element and
contracted input, read off the forward jaxpr, so the count is the same on every backend; the
backward pass costs two forward passes); the achieved model FLOP/s and, where the device's dense
bf16 peak is known (`PEAK_BF16_TFLOPS`), model FLOP utilisation (MFU). XLA's own
`cost_analysis` is not used: on GPUs it does not count the convolutions and matrix products it
hands to cuDNN and cuBLAS.
"""

from __future__ import annotations

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxpapers import zoo
from jaxpapers.train import devices

_MODEL = flags.DEFINE_string('model', 'resnet50', 'Zoo preset (an image classifier or a GPT).')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Global batch size.')
_SEQ_LEN = flags.DEFINE_integer('seq_len', 1024, 'Tokens per sequence (language models).')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ['float32', 'bfloat16'], 'Compute dtype.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats; the best is reported.')

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s per device.
PEAK_BF16_TFLOPS = {'NVIDIA H100 80GB HBM3': 989.4, 'NVIDIA H200': 989.4, 'NVIDIA A100-SXM4-80GB': 312.0,
                    'NVIDIA A100-SXM4-40GB': 312.0, 'TPU v4': 275.0, 'TPU v5 lite': 197.0,
                    'TPU v5': 459.0}


def _is_language_model(preset: zoo.Preset) -> bool:
  (example,) = preset.inputs()
  return jnp.issubdtype(example.dtype, jnp.integer)


def _batch(preset: zoo.Preset, batch_size: int, seq_len: int, rng: np.random.Generator):
  (example,) = preset.inputs()
  if _is_language_model(preset):
    vocab = preset.build().vocab_size
    tokens = rng.integers(0, vocab, (batch_size, seq_len + 1), dtype=np.int32)
    return {'inputs': tokens[:, :-1], 'labels': tokens[:, 1:]}
  images = rng.standard_normal((batch_size, *example.shape[1:]), dtype=np.float32)
  return {'inputs': images, 'labels': rng.integers(0, 1000, batch_size, dtype=np.int32)}


def forward_matmul_flops(jaxpr) -> int:
  """2 x (output elements) x (contracted size) summed over every dot_general and convolution of a
  (closed) jaxpr, sub-jaxprs included (a scan's body counted once per iteration)."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    out = eqn.outvars[0].aval
    if eqn.primitive.name == 'dot_general':
      (contracting, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval
      total += 2 * math.prod(out.shape) * math.prod(lhs.shape[d] for d in contracting)
    elif eqn.primitive.name == 'conv_general_dilated':
      rhs, spec = eqn.invars[1].aval, eqn.params['dimension_numbers'].rhs_spec
      # The kernel's input-feature size is already per group for grouped convolutions.
      per_output = rhs.shape[spec[1]] * math.prod(rhs.shape[d] for d in spec[2:])
      total += 2 * math.prod(out.shape) * per_output
    repeats = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if hasattr(sub, 'eqns') or hasattr(getattr(sub, 'jaxpr', None), 'eqns'):
          total += repeats * forward_matmul_flops(sub)
  return total


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  preset = zoo.get(_MODEL.value)
  model = preset.build()
  kwargs = dict(preset.apply_kwargs)
  compute_dtype = jnp.dtype(_DTYPE.value)
  language = _is_language_model(preset)
  mesh = devices.make_mesh()
  batch = jax.device_put(_batch(preset, _BATCH.value, _SEQ_LEN.value, np.random.default_rng(0)),
                         devices.data_sharded(mesh))
  train_kwargs = {**kwargs, 'train': True} if 'train' in kwargs else kwargs

  def init(rng):
    variables = model.init({'params': rng, 'dropout': rng}, batch['inputs'][:1], **kwargs)
    return variables, tx.init(variables['params'])

  tx = optax.sgd(1e-3, momentum=0.9)

  def step(variables, opt_state, batch, rng):
    def loss_fn(params):
      params = jax.tree.map(lambda x: x.astype(compute_dtype), params)
      inputs = batch['inputs'] if language else batch['inputs'].astype(compute_dtype)
      others = {k: v for k, v in variables.items() if k != 'params'}  # e.g. batch statistics
      logits, updates = model.apply({'params': params, **others}, inputs, rngs={'dropout': rng},
                                    mutable=list(others), **train_kwargs)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                             batch['labels']).mean()
      return loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])
    param_updates, opt_state = tx.update(grads, opt_state, variables['params'])
    params = optax.apply_updates(variables['params'], param_updates)
    return {**variables, **updates, 'params': params}, opt_state, loss

  replicated = devices.replicated(mesh)
  variables, opt_state = jax.jit(init, out_shardings=replicated)(jax.random.key(0))
  num_params = zoo.num_params(variables['params'])
  step = jax.jit(step, donate_argnums=(0, 1), out_shardings=replicated)
  rng = jax.random.key(1)
  forward = lambda params: model.apply(
      {**variables, 'params': params}, batch['inputs'], rngs={'dropout': rng},
      mutable=[k for k in variables if k != 'params'], **train_kwargs)
  flops_per_step = 3 * forward_matmul_flops(jax.make_jaxpr(forward)(variables['params']))

  for _ in range(3):  # warm-up
    variables, opt_state, loss = step(variables, opt_state, batch, rng)
  jax.block_until_ready(loss)
  best = float('inf')
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      variables, opt_state, loss = step(variables, opt_state, batch, rng)
    jax.block_until_ready(loss)
    best = min(best, (time.perf_counter() - start) / _STEPS.value)

  device_kind = jax.devices()[0].device_kind
  result = {'model': _MODEL.value, 'dtype': _DTYPE.value, 'batch_size': _BATCH.value,
            'params': num_params, 'step_s': best, 'examples_per_s': _BATCH.value / best,
            'model_flops_per_step': flops_per_step,
            'model_tflops_per_s': flops_per_step / best / 1e12, 'loss': float(loss),
            'device': device_kind, 'device_count': jax.device_count(),
            'jax_version': jax.__version__}
  if language:
    result.update(seq_len=_SEQ_LEN.value, tokens_per_s=_BATCH.value * _SEQ_LEN.value / best)
  peak = PEAK_BF16_TFLOPS.get(device_kind)
  if peak is not None:
    result['peak_bf16_tflops_per_device'] = peak
    result['mfu'] = flops_per_step / best / 1e12 / (peak * jax.device_count())
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
