"""Peak memory and speed of plain versus chunked attention (Rabe & Staats 2021) as length grows.

"Self-attention Does Not Need O(n^2) Memory", Rabe & Staats 2021, arXiv:2112.05682, Table 2/3.

    python scripts/attention_memory.py --lengths=1024,2048,4096,8192,16384,32768,65536

For each sequence length n, the forward and backward pass (gradients of a scalar loss with respect
to q, k and v) of `dot_product_attention` and of `chunked_attention` (query chunks of 1024, key
chunks of 4096, as the paper) are compiled for one batch of `--heads` heads of width `--head_dim`.
Reported per row: the compiled program's temporary memory as XLA plans it (`memory_analysis`: every
buffer beyond the inputs and outputs, i.e. the peak working memory, which is what grows as n^2 for
plain attention) and the time per call; a program that fails to compile or run for lack of device
memory is reported as `out of memory`. Prints a
markdown table and writes it, with the raw rows, to `--out` (JSON) when given.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxpapers.nn import attention

_LENGTHS = flags.DEFINE_list('lengths', ['1024', '2048', '4096', '8192'], 'Sequence lengths.')
_HEADS = flags.DEFINE_integer('heads', 16, 'Attention heads.')
_HEAD_DIM = flags.DEFINE_integer('head_dim', 64, 'Width of each head.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ['float32', 'bfloat16'], 'q, k, v dtype.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls; the best is reported.')
_OUT = flags.DEFINE_string('out', None, 'Optional JSON file for the rows.')

IMPLEMENTATIONS = {
    'plain': attention.dot_product_attention,
    'chunked': functools.partial(attention.chunked_attention, query_chunk_size=1024,
                                 key_chunk_size=4096),
}


def _is_out_of_memory(error: Exception) -> bool:
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text or 'out of memory' in text


def measure(name: str, length: int) -> dict:
  """One row: compiled temporary bytes and seconds per forward+backward call."""
  fn = IMPLEMENTATIONS[name]
  shape = (1, length, _HEADS.value, _HEAD_DIM.value)
  keys = jax.random.split(jax.random.key(length), 3)
  q, k, v = (jax.random.normal(key, shape, _DTYPE.value) for key in keys)
  loss = lambda q, k, v: jnp.sum(fn(q, k, v, causal=True).astype(jnp.float32))
  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  row = {'implementation': name, 'length': length}
  try:
    compiled = grad.lower(q, k, v).compile()
    row['temp_bytes'] = compiled.memory_analysis().temp_size_in_bytes
    jax.block_until_ready(compiled(q, k, v))  # warm-up; fails here if the plan does not fit
    best = float('inf')
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      jax.block_until_ready(compiled(q, k, v))
      best = min(best, time.perf_counter() - start)
    row['seconds'] = best
  except Exception as error:  # noqa: BLE001 -- only an out-of-memory failure is a result
    if not _is_out_of_memory(error):
      raise
    row['out_of_memory'] = True
  return row


def _mib(value: int) -> str:
  return f'{value / 2**20:,.1f}'


def markdown(rows: list[dict]) -> str:
  by_key = {(r['implementation'], r['length']): r for r in rows}
  lines = ['| length | plain temp MiB | plain ms | chunked temp MiB | chunked ms | '
           'chunked / plain time |', '|---:|---:|---:|---:|---:|---:|']
  for length in sorted({r['length'] for r in rows}):
    cells = [f'{length:,}']
    for name in IMPLEMENTATIONS:
      r = by_key[name, length]
      if r.get('out_of_memory'):
        cells += ['out of memory', '-']
      else:
        cells += [_mib(r['temp_bytes']), f'{1e3 * r["seconds"]:.2f}']
    plain, chunked = by_key['plain', length], by_key['chunked', length]
    ratio = ('-' if 'seconds' not in plain or 'seconds' not in chunked
             else f'{chunked["seconds"] / plain["seconds"]:.2f}')
    lines.append('| ' + ' | '.join(cells + [ratio]) + ' |')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  rows = []
  for length in (int(n) for n in _LENGTHS.value):
    for name in IMPLEMENTATIONS:
      rows.append(measure(name, length))
      print(json.dumps(rows[-1]), flush=True)
  table = markdown(rows)
  header = (f'{jax.devices()[0].device_kind}, jax {jax.__version__}, batch 1, {_HEADS.value} heads '
            f'x {_HEAD_DIM.value}, {_DTYPE.value}, causal, forward + backward')
  print(f'{header}\n\n{table}')
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump({'setting': header, 'rows': rows, 'table': table}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
