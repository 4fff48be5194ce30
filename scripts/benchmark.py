"""Training-step throughput of jaxpapers models against the same model in plain PyTorch.

    python scripts/benchmark.py digits_cnn [--batch_size=64] [--steps=300]
    python scripts/benchmark.py --all --json=out.json   # every benchmark at its own settings
    python scripts/benchmark.py resnet20 --profile=/tmp/trace   # and the JAX step's costliest ops
    python scripts/benchmark.py clip_step --compare_options=defaults \
        --compare_options='xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_ELTWISE'
    python scripts/benchmark.py --conv_layers   # single convolutions: XLA's kernels against oneDNN's
    python scripts/benchmark.py --conv_passes   # ResNet-20's convolutions, forward and backward

Both sides run the same architecture, optimiser and batch size on the same in-memory batch (data
loading is excluded), after warm-up (compilation). The two sides are timed in alternation,
`--repeats` rounds of `--steps` steps each (JAX, then PyTorch with its default threads, then with
one thread, the faster of the two counting), so load from other processes hits both alike; each
figure is the best round. Every row also gives the JAX step's achieved GFLOP/s and its ratio to a
roofline measured in the same run: a jitted 2048x2048 float32 matmul. FLOPs are counted from the
step's jaxpr: 2 per multiply-add of every `dot_general` and `conv_general_dilated` (scan bodies
times their length), element-wise work not counted, so the figure is a lower bound on the work done.
PyTorch comes from the `bench` extra (`pip install -e '.[bench]'`). Prints one JSON line per
benchmark, ready for WORKSPACE.md.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import time
from typing import Callable

from absl import app, flags

_BATCH = flags.DEFINE_integer('batch_size', None, "Global batch size; default: the benchmark's.")
_STEPS = flags.DEFINE_integer('steps', None, "Timed steps per round; default: the benchmark's.")
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed rounds; the best is reported.')
_SEQ_LEN = flags.DEFINE_integer('seq_len', 128, 'Tokens per sequence (language models).')
_ALL = flags.DEFINE_bool('all', False, 'Run every benchmark, each at its default settings.')
_JSON = flags.DEFINE_string('json', None, 'Also write the results (JSON) to this file.')
_PROFILE = flags.DEFINE_string('profile', None, 'Also trace a few JAX steps into this directory '
                               '(TensorBoard/Perfetto) and report the ops that take the most time.')

_COMPARE_OPTIONS = flags.DEFINE_multi_string(
    'compare_options', None, "Instead of PyTorch, time the named benchmarks' JAX steps built under "
    "each of these XLA compiler-option sets against each other: 'defaults' (XLA's own) or "
    "'key=value;key=value' (values as XLA takes them; true/false and integers converted).")
_CONV_LAYERS = flags.DEFINE_bool(
    'conv_layers', False, "Time single forward convolutions of the benchmarks' shapes in JAX "
    "(XLA's default kernels and oneDNN's) and PyTorch (oneDNN, NCHW and channels-last).")
_CONV_PASSES = flags.DEFINE_bool(
    'conv_passes', False, "Time ResNet-20's training-step convolutions pass by pass (forward, "
    "input gradient, kernel gradient) in JAX under its preset's CPU kernels and in PyTorch, and "
    "their sums per step.")

BENCHMARKS: dict[str, Callable[[], 'Comparison']] = {}
# Per benchmark: batch size and timed steps per round. Chosen so that `--all` (3 rounds) stays
# within a few minutes on 2 cores.
DEFAULTS = {'digits_cnn': (64, 200), 'fast_weights_cell': (128, 100), 'ddpm_sampling': (64, 20),
            'clip_step': (128, 10), 'resnet20': (128, 5), 'dcgan_step': (64, 3),
            'gpt2_small': (4, 3)}
_current = {}  # name of the benchmark being run, for bench_batch_size() and bench_steps();
# 'options': the compiler options every timed JAX step is built with (`--compare_options`)


def benchmark(fn):
  BENCHMARKS[fn.__name__] = fn
  return fn


def bench_batch_size() -> int:
  return _BATCH.value or DEFAULTS[_current['name']][0]


def bench_steps() -> int:
  return _STEPS.value or DEFAULTS[_current['name']][1]


def step_options(preset: dict | None = None) -> dict | None:
  """Compiler options for a benchmark's timed JAX step: its preset's (None: XLA's defaults), or
  the set `--compare_options` is timing."""
  return _current['options'] if 'options' in _current else preset


def parse_options(text: str) -> dict | None:
  """'defaults' -> None; 'key=value;key=value' -> a compiler-options dict."""
  if text == 'defaults':
    return None
  def convert(value):  # XLA takes bool options as bools and integer ones as ints
    if value.lower() in ('true', 'false'):
      return value.lower() == 'true'
    return int(value) if value.lstrip('-').isdigit() else value

  options = {}
  for item in text.split(';'):
    key, sep, value = item.partition('=')
    if not sep:
      raise app.UsageError(f'--compare_options: {item!r} is not key=value')
    options[key.strip()] = convert(value)
  return options


@dataclasses.dataclass
class Comparison:
  """One benchmark's two sides, each a step function timed `bench_steps()` times per round."""
  jax_step: Callable[[], None]
  jax_sync: Callable[[], None]
  torch_step: Callable[[], None]
  flops: float  # per JAX step, see `matmul_flops`
  unit: str  # what `items` counts: 'steps', 'images', 'tokens', ...
  items: float = 1.0  # units per step
  torch_setup: Callable[[bool], None] = lambda on: None  # called with True before, False after
  rounds_of_one: bool = False  # a step is a whole timed run (a sampling chain of `bench_steps()`)
  info: dict = dataclasses.field(default_factory=dict)
  jax_hlo: Callable[[], str] | None = None  # the compiled JAX step's HLO text, for `--profile`


def matmul_flops(fn, *args) -> float:
  """2 x multiply-adds of every dot_general and convolution in the jaxpr of `fn(*args)`."""
  import jax
  import jax.extend
  import numpy as np

  def count(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      if name == 'dot_general':
        (lhs_contract, _), (lhs_batch, _) = eqn.params['dimension_numbers']
        lhs = eqn.invars[0].aval.shape
        total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod(
            [lhs[d] for d in lhs_contract])
      elif name == 'conv_general_dilated':
        rhs = eqn.invars[1].aval.shape  # per output element: kernel window x input features
        spec = eqn.params['dimension_numbers'].rhs_spec  # (out, in, spatial...)
        window = np.prod([rhs[d] for d in spec[1:]])
        total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * window
      multiplier = eqn.params.get('length', 1) if name == 'scan' else 1
      for sub in sub_jaxprs(eqn.params.values()):
        total += multiplier * count(sub)
    return total

  def sub_jaxprs(values):  # the bodies of scan, pjit, custom_vjp, the branches of cond, ...
    for value in values:
      if isinstance(value, (tuple, list)):
        yield from sub_jaxprs(value)
      elif isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
      elif isinstance(value, jax.extend.core.Jaxpr):
        yield value

  return count(jax.make_jaxpr(fn)(*args).jaxpr)


def time_rounds(runs: dict[str, tuple[Callable[[], None], Callable[[], None]]],
                setups: dict[str, Callable[[bool], None]], n: int) -> dict[str, float]:
  """Steps/s of each (step, sync): warm-up, then `--repeats` rounds, every run once per round.
  Python's garbage collector is off while timing, as in `timeit`: a collection's cost grows with
  everything earlier benchmarks left in the process, and would fall on whichever side it hits."""
  def timed(name, count):
    step, sync = runs[name]
    setups.get(name, lambda on: None)(True)
    try:
      start = time.perf_counter()
      for _ in range(count):
        step()
      sync()
      return time.perf_counter() - start
    finally:
      setups.get(name, lambda on: None)(False)

  for name in runs:
    timed(name, min(n, 3))  # warm-up, compilation included
  best = dict.fromkeys(runs, float('inf'))
  gc.collect()
  gc.disable()
  try:
    for _ in range(_REPEATS.value):
      for name in runs:
        best[name] = min(best[name], timed(name, n))
  finally:
    gc.enable()
  return {name: n / seconds for name, seconds in best.items()}


def roofline() -> dict:
  """GFLOP/s of a 2048x2048 float32 matmul, jitted JAX and torch, timed like the benchmarks."""
  import jax
  import numpy as np
  import torch

  n = 2048
  a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
  x = jax.device_put(a)
  matmul = jax.jit(lambda x: x @ x)
  out = {}
  t = torch.from_numpy(a)
  rates = time_rounds({'jax': (lambda: out.update(y=matmul(x)),
                               lambda: out['y'].block_until_ready()),
                       'torch': (lambda: torch.mm(t, t), lambda: None)}, {}, 10)
  flops = 2.0 * n ** 3
  return {'jax_gflops': rates['jax'] * flops / 1e9, 'torch_gflops': rates['torch'] * flops / 1e9}


def compare(comparison: Comparison, roof_gflops: float) -> dict:
  import torch
  c = comparison
  runs = {'jax': (c.jax_step, c.jax_sync), 'torch': (c.torch_step, lambda: None)}
  threads = torch.get_num_threads()

  def torch_threads(count):
    def setup(on):
      torch.set_num_threads(count if on else threads)
      c.torch_setup(on)
    return setup

  # With small operations on a busy machine, torch's thread pool can stall on its own barriers,
  # so PyTorch is timed with its default threads and with one; the faster counts.
  runs['torch_1thread'] = runs['torch']
  setups = {'torch': torch_threads(threads), 'torch_1thread': torch_threads(1)}
  rates = time_rounds(runs, setups, 1 if c.rounds_of_one else bench_steps())
  torch_best = max(rate for name, rate in rates.items() if name != 'jax')
  gflops = rates['jax'] * c.flops / 1e9
  if _PROFILE.value:
    result_ops = top_ops(c, 1 if c.rounds_of_one else bench_steps(),
                         os.path.join(_PROFILE.value, _current['name']))
  result = {f'jax_{c.unit}_per_s': rates['jax'] * c.items,
            f'torch_{c.unit}_per_s': rates['torch'] * c.items}
  result[f'torch_1thread_{c.unit}_per_s'] = rates['torch_1thread'] * c.items
  result.update(jax_over_torch=rates['jax'] / torch_best, jax_gflops=gflops,
                torch_gflops=torch_best * c.flops / 1e9, jax_over_roofline=gflops / roof_gflops,
                gflop_per_step=c.flops / 1e9, steps=bench_steps(), torch_threads=threads,
                torch_version=torch.__version__, **c.info)
  if _PROFILE.value:
    result.update(result_ops)
  return result


def op_kinds(hlo: str) -> dict[str, tuple[str, str]]:
  """The kind and output shape of each instruction of a compiled HLO module, fusions by what they
  compute: 'convolution' (a kernel-shaped output is a weight gradient: XLA has brought every
  convolution to the same layouts by then), 'dot', 'reduce', 'transpose/copy' (layout changes,
  with whatever was fused into them), 'broadcast' (a materialised broadcast) or 'elementwise'.
  A library custom call (oneDNN's `__onednn$convolution`) is listed under the name its thunk is
  traced as, `<instruction><target>`, and is a 'convolution' or 'dot' by its target."""
  import re
  bodies = {m.group(1): m.group(2) for m in
            re.finditer(r'^%?(\S+) \(.*?\) -> .*? \{\n(.*?)\n\}', hlo, re.M | re.S)}
  kinds = {}
  for m in re.finditer(r'^\s+(?:ROOT )?%(\S+) = (\(.*?\)|\S+) ([a-z-]+)\((.*)$', hlo, re.M):
    name, shape, opcode, rest = m.groups()
    shape = shape.lstrip('(')  # a tuple's first element: a custom call's result before its scratch
    target = re.search(r'custom_call_target="([^"]+)"', rest) if opcode == 'custom-call' else None
    if target:
      kind = ('convolution' if 'convolution' in target.group(1) else
              'dot' if 'matmul' in target.group(1) else 'custom call')
      kinds[name + target.group(1)] = (kind, shape.split('{')[0])
      continue
    called = re.search(r'calls=%([^,\s]+)', rest)
    body = bodies.get(called.group(1), '') if called else f'= x {opcode}({rest}'
    ops = set(re.findall(r'= \S+ ([a-z-]+)\(', body)) - {'parameter', 'bitcast', 'constant'}
    if 'convolution' in ops:
      kind = 'convolution'
    elif 'dot' in ops:
      kind = 'dot'
    elif 'reduce' in ops or 'reduce-window' in ops:
      kind = 'reduce'
    elif ops & {'transpose', 'copy'}:
      kind = 'transpose/copy'
    elif ops <= {'broadcast', 'reshape'}:
      kind = 'broadcast'
    else:
      kind = 'elementwise'
    kinds[name] = (kind, shape.split('{')[0])
  return kinds


def top_ops(c: Comparison, steps: int, directory: str, count: int = 10) -> dict:
  """The JAX side's op time over `steps` traced steps, from one event per XLA:CPU thunk (named as
  its instruction in the compiled HLO, `ynn_fusion.8`): the `count` most expensive ops and, where
  the benchmark gives its compiled HLO, each op's kind and the share of each kind (`op_kinds`)."""
  import collections
  import glob
  import gzip

  import jax
  jax.profiler.start_trace(directory, create_perfetto_trace=True)
  try:
    for _ in range(steps):
      c.jax_step()
    c.jax_sync()
  finally:
    jax.profiler.stop_trace()
  trace = max(glob.glob(os.path.join(directory, 'plugins/profile/*/perfetto_trace.json.gz')),
              key=os.path.getmtime)
  with gzip.open(trace) as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  micros = collections.Counter()
  for event in events:  # XLA's thunks; host-side spans (`PjitFunction(...)`) have no `hlo_op`
    if event.get('ph') == 'X' and event.get('args', {}).get('hlo_op'):
      micros[event['args']['hlo_op']] += event.get('dur', 0)
  total = sum(micros.values())
  kinds = op_kinds(c.jax_hlo()) if c.jax_hlo else {}
  by_kind = collections.Counter()
  for name, us in micros.items():
    by_kind[kinds.get(name, ('unknown',))[0]] += us
  ops = [{'op': name, 'kind': kinds.get(name, ('unknown', ''))[0],
          'shape': kinds.get(name, ('unknown', ''))[1], 'ms': round(us / 1e3, 2),
          'share': round(us / total, 3)} for name, us in micros.most_common(count)]
  return {'top_ops': ops,
          'op_kinds': {kind: round(us / total, 3) for kind, us in by_kind.most_common()}}


def experiment_step(experiment, state, batch: dict):
  """`experiment.train_step` under jit (with the training loop's compiler options), its state
  donated, on one batch on the device: the step and sync functions for `Comparison`, the step's
  FLOPs and its compiled HLO text (a function)."""
  import jax

  from jaxpapers.train import devices
  train_step = jax.jit(experiment.train_step, donate_argnums=0,
                       compiler_options=step_options(
                           devices.run_compiler_options(experiment.config.train)))
  batch = jax.device_put(batch)
  holder = {'state': state}
  flops = matmul_flops(experiment.train_step, state, batch)

  def step():
    holder['state'], _ = train_step(holder['state'], batch)

  return (step, lambda: jax.block_until_ready(holder['state']), flops,
          lambda: train_step.lower(holder['state'], batch).compile().as_text())


def torch_train_step(model, optimizer, loss_fn):
  def step():
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model).backward()
    optimizer.step()
  return step


@benchmark
def digits_cnn() -> Comparison:
  """The digits convnet of experiments/classify.py (LeNet-style, 53,002 parameters), AdamW."""
  import jax
  import numpy as np
  import torch
  from torch import nn

  from experiments import classify
  from experiments.configs import classify as configs
  from jaxpapers.train import devices

  batch_size = bench_batch_size()
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(batch_size, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 10, size=batch_size).astype(np.int32)

  config = configs.get_config('digits_cnn')
  experiment = classify.Classify(config, devices.make_mesh())
  state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  jax_step, jax_sync, flops, hlo = experiment_step(experiment, state,
                                                   {'image': images, 'label': labels})

  model = nn.Sequential(
      nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
  assert sum(p.numel() for p in model.parameters()) == 53_002
  optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.learning_rate,
                                weight_decay=config.optim.weight_decay)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  y = torch.from_numpy(labels).long()

  torch_step = torch_train_step(model, optimizer,
                                lambda model: nn.functional.cross_entropy(model(x), y))
  return Comparison(jax_step, jax_sync, torch_step, flops, 'steps', jax_hlo=hlo)


@benchmark
def fast_weights_cell() -> Comparison:
  """Ba et al. 2016's associative-retrieval classifier with the fast-weights cell, R = 50, Adam.

  JAX: the train step of experiments/fast_weights.py (`nn.RNN`, i.e. lax.scan over the 11 tokens).
  PyTorch: the same cell (Eqs. 2, 4, 5: S = 1, layer norm, the memory as the last states, as the
  JAX classifier keeps it for sequences no longer than R) and classifier as a Python loop over
  time, started from the JAX parameters; its logits are checked against JAX's before timing.
  """
  import jax
  import numpy as np
  import torch
  from torch import nn

  from experiments import fast_weights as experiment_lib
  from experiments.configs import fast_weights as configs
  from jaxpapers.data import associative_retrieval
  from jaxpapers.recurrent import fast_weights
  from jaxpapers.train import devices

  batch_size = bench_batch_size()
  config = configs.get_config('fast_weights_r50')
  data = associative_retrieval.generate(batch_size, np.random.default_rng(0))
  experiment = experiment_lib.FastWeightsRetrieval(config, devices.make_mesh())
  m = experiment.model
  state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  params = jax.tree.map(np.asarray, state.params)
  jax_step, jax_sync, flops, hlo = experiment_step(experiment, state, data)

  class Classifier(nn.Module):

    def __init__(self):
      super().__init__()
      r = m.hidden_size
      self.embed = nn.Embedding(associative_retrieval.VOCAB_SIZE, 100)
      self.recurrent = nn.Linear(r, r, bias=False)  # W
      self.input = nn.Linear(100, r, bias=False)  # C
      self.norm = nn.LayerNorm(r, eps=1e-6)  # Flax's epsilon.
      self.hidden = nn.Linear(r, 100)
      self.logits = nn.Linear(100, associative_retrieval.NUM_CLASSES)

    def forward(self, tokens):
      x = self.embed(tokens)
      steps = tokens.shape[1]
      h = x.new_zeros(x.shape[0], m.hidden_size)
      past = x.new_zeros(x.shape[0], steps, m.hidden_size)  # the attention form's memory, as JAX's
      decays = m.decay ** torch.arange(steps - 1, -1, -1, dtype=x.dtype)
      for t in range(steps):
        boundary = self.recurrent(h) + self.input(x[:, t])
        h_next = torch.relu(boundary)
        for _ in range(m.inner_steps):  # A(t) h_s by Eq. (4)
          scores = torch.bmm(past, h_next[:, :, None])[..., 0] * decays
          read = m.fast_lr * torch.bmm(scores[:, None, :], past)[:, 0]
          h_next = torch.relu(self.norm(boundary + read))
        past = torch.cat([past[:, 1:], h_next[:, None]], dim=1)
        h = h_next
      return self.logits(torch.relu(self.hidden(h)))

  model = Classifier()
  assert sum(p.numel() for p in model.parameters()) == fast_weights.num_params('fast_weights', 50)
  with torch.no_grad():  # Flax kernels are [in, out]; torch weights [out, in].
    for target, source in ((model.embed.weight, params['embed']['embedding']),
                           (model.recurrent.weight, params['cell']['recurrent']['kernel'].T),
                           (model.input.weight, params['cell']['input']['kernel'].T),
                           (model.norm.weight, params['cell']['layer_norm']['scale']),
                           (model.norm.bias, params['cell']['layer_norm']['bias']),
                           (model.hidden.weight, params['hidden']['kernel'].T),
                           (model.hidden.bias, params['hidden']['bias']),
                           (model.logits.weight, params['logits']['kernel'].T),
                           (model.logits.bias, params['logits']['bias'])):
      target.copy_(torch.from_numpy(np.array(source)))
  tokens = torch.from_numpy(data['tokens']).long()
  labels = torch.from_numpy(data['label']).long()
  with torch.no_grad():
    np.testing.assert_allclose(model(tokens).numpy(),
                               experiment.model.apply({'params': params}, data['tokens']),
                               rtol=1e-3, atol=1e-4)
  optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.learning_rate)

  torch_step = torch_train_step(
      model, optimizer, lambda model: nn.functional.cross_entropy(model(tokens), labels))
  return Comparison(jax_step, jax_sync, torch_step, flops, 'steps',
                    info={'hidden_size': m.hidden_size}, jax_hlo=hlo)


@benchmark
def ddpm_sampling() -> Comparison:
  """DDPM ancestral sampling (Algorithm 2, sigma^2 = beta) with the digits U-Net of configs/ddpm.py.

  JAX: `samplers.ancestral_sample`, one jitted `lax.scan` over the chain, with the preset's CPU
  kernels (`config.train.cpu_kernels`: oneDNN's convolutions, as experiments/ddpm.py samples).
  PyTorch: the same U-Net (same layers, names and parameter count; TF-style 'SAME' padding for the
  stride-2 convolution) and the same update as a Python loop under `inference_mode`. Both start
  from the same random weights (the zero-initialised layers perturbed, so every layer matters) and
  their outputs are compared before timing. `--steps` network evaluations of `--batch_size` images
  are timed and scaled to images per second of the 1000-step chain. PyTorch runs with denormals
  flushed to zero, as XLA does on CPU.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  from flax import traverse_util
  from torch import nn
  from torch.nn import functional as F

  from experiments import ddpm
  from experiments.configs import ddpm as configs
  from jaxpapers import zoo
  from jaxpapers.diffusion import samplers
  from jaxpapers.train import devices

  config = configs.get_config('digits')
  num_timesteps = config.diffusion.num_timesteps
  model = m = zoo.build_from_config(config.model)
  batch_size, chain = bench_batch_size(), min(bench_steps(), num_timesteps)
  rng = np.random.default_rng(0)
  shape = (batch_size, 8, 8, 1)
  params = model.init(jax.random.key(0), jnp.zeros(shape), jnp.zeros((batch_size,), jnp.int32),
                      train=False)['params']
  params = jax.tree.map(lambda p: np.array(p + 0.05 * rng.standard_normal(p.shape), np.float32),
                        params)
  schedule = samplers.respaced_schedule(ddpm.make_betas(config),
                                        samplers.evenly_spaced_timesteps(num_timesteps, chain))
  x_T = rng.standard_normal(shape).astype(np.float32)

  def eps_fn(x, t):
    return model.apply({'params': params}, x, t, train=False)

  def chain_fn(x, key):
    return samplers.ancestral_sample(eps_fn, schedule, x, key, variance='fixed_large',
                                     clip_denoised=True)

  sample = jax.jit(chain_fn, compiler_options=step_options(
      devices.run_compiler_options(config.train)))  # the preset's, as experiments/ddpm.py

  jax_out = {}
  sample_key = jax.random.key(1)
  flops = matmul_flops(chain_fn, x_T, sample_key)  # not `sample`: its compiler options forbid nesting

  def group_norm(c):
    return nn.GroupNorm(m.num_groups, c, eps=1e-6)

  class ResnetBlock(nn.Module):

    def __init__(self, in_ch, out_ch):
      super().__init__()
      self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
      self.temb_proj = nn.Linear(4 * m.ch, out_ch)
      self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
      self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x, temb):
      h = self.conv1(F.silu(self.norm1(x))) + self.temb_proj(F.silu(temb))[:, :, None, None]
      h = self.conv2(F.silu(self.norm2(h)))  # dropout is off when sampling
      return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h

  class AttnBlock(nn.Module):

    def __init__(self, c):
      super().__init__()
      self.norm = group_norm(c)
      self.q, self.k, self.v, self.proj_out = (nn.Linear(c, c) for _ in range(4))

    def forward(self, x):
      b, c, height, width = x.shape
      d = c // m.num_heads
      h = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
      q, k, v = (layer(h).reshape(b, -1, m.num_heads, d).transpose(1, 2)
                 for layer in (self.q, self.k, self.v))
      h = (torch.softmax(q @ k.transpose(2, 3) * d ** -0.5, dim=-1) @ v).transpose(1, 2)
      return x + self.proj_out(h.reshape(b, height * width, c)).transpose(1, 2).reshape(x.shape)

  class TorchUNet(nn.Module):
    """The Flax UNet's layers under the Flax names, so its parameters load one to one."""

    def __init__(self, resolution):
      super().__init__()
      layers, skips, c = {}, [m.ch], m.ch
      layers['temb_dense0'], layers['temb_dense1'] = nn.Linear(m.ch, 4 * m.ch), nn.Linear(
          4 * m.ch, 4 * m.ch)
      layers['conv_in'] = nn.Conv2d(1, m.ch, 3, padding=1)
      for level, mult in enumerate(m.ch_mult):
        for i in range(m.num_res_blocks):
          layers[f'down_{level}_block_{i}'], c = ResnetBlock(c, m.ch * mult), m.ch * mult
          if resolution in m.attn_resolutions:
            layers[f'down_{level}_attn_{i}'] = AttnBlock(c)
          skips.append(c)
        if level != len(m.ch_mult) - 1:
          layers[f'down_{level}_downsample'] = nn.Conv2d(c, c, 3, stride=2)
          skips.append(c)
          resolution //= 2
      layers['mid_block_1'], layers['mid_attn_1'] = ResnetBlock(c, c), AttnBlock(c)
      layers['mid_block_2'] = ResnetBlock(c, c)
      for level, mult in reversed(list(enumerate(m.ch_mult))):
        for i in range(m.num_res_blocks + 1):
          layers[f'up_{level}_block_{i}'] = ResnetBlock(c + skips.pop(), m.ch * mult)
          c = m.ch * mult
          if resolution in m.attn_resolutions:
            layers[f'up_{level}_attn_{i}'] = AttnBlock(c)
        if level:
          layers[f'up_{level}_upsample'] = nn.Conv2d(c, c, 3, padding=1)
          resolution *= 2
      layers['norm_out'], layers['conv_out'] = group_norm(c), nn.Conv2d(c, 1, 3, padding=1)
      self.layers = nn.ModuleDict(layers)

    def forward(self, x, t):
      layers = self.layers
      half = m.ch // 2
      freqs = torch.exp(-np.log(10000.0) / (half - 1) * torch.arange(half, dtype=torch.float32))
      args = t.float()[:, None] * freqs[None]
      temb = layers['temb_dense0'](torch.cat([torch.sin(args), torch.cos(args)], dim=1))
      temb = layers['temb_dense1'](F.silu(temb))
      hs = [layers['conv_in'](x)]
      for level in range(len(m.ch_mult)):
        for i in range(m.num_res_blocks):
          h = layers[f'down_{level}_block_{i}'](hs[-1], temb)
          if f'down_{level}_attn_{i}' in layers:
            h = layers[f'down_{level}_attn_{i}'](h)
          hs.append(h)
        if level != len(m.ch_mult) - 1:  # 'SAME' at stride 2 pads only after (TF semantics).
          hs.append(layers[f'down_{level}_downsample'](F.pad(hs[-1], (0, 1, 0, 1))))
      h = layers['mid_block_2'](layers['mid_attn_1'](layers['mid_block_1'](hs[-1], temb)), temb)
      for level in reversed(range(len(m.ch_mult))):
        for i in range(m.num_res_blocks + 1):
          h = layers[f'up_{level}_block_{i}'](torch.cat([h, hs.pop()], dim=1), temb)
          if f'up_{level}_attn_{i}' in layers:
            h = layers[f'up_{level}_attn_{i}'](h)
        if level:
          h = layers[f'up_{level}_upsample'](F.interpolate(h, scale_factor=2, mode='nearest'))
      return layers['conv_out'](F.silu(layers['norm_out'](h)))

  net = TorchUNet(resolution=8).eval()
  assert sum(p.numel() for p in net.parameters()) == zoo.num_params(params)
  state = {}
  for name, value in traverse_util.flatten_dict(params, sep='.').items():
    key = 'layers.' + name.replace('.kernel', '.weight').replace('.scale', '.weight')
    value = torch.from_numpy(value)
    # Flax kernels: conv [kh, kw, in, out], dense [in, out]; torch: [out, in, kh, kw], [out, in].
    value = value.permute(3, 2, 0, 1) if value.ndim == 4 else value.T if value.ndim == 2 else value
    state[key] = value.reshape(net.state_dict()[key].shape)  # 1x1 convolutions from dense kernels
  net.load_state_dict(state)  # strict: every parameter of either side has its counterpart
  t_check = rng.integers(0, num_timesteps, batch_size)
  with torch.inference_mode():
    ours = net(torch.from_numpy(x_T).permute(0, 3, 1, 2), torch.from_numpy(t_check))
  np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(),
                             eps_fn(x_T, jnp.asarray(t_check, jnp.int32)), rtol=1e-3, atol=1e-3)

  c = {k: torch.from_numpy(np.asarray(v)) for k, v in schedule.coefs.items()}
  model_steps = np.asarray(schedule.model_t)
  log_var = np.log(np.append(np.asarray(c['posterior_variance'])[1], np.asarray(c['betas'])[1:]))

  @torch.inference_mode()
  def torch_chain():
    x = torch.from_numpy(x_T).permute(0, 3, 1, 2)
    for s in range(chain - 1, -1, -1):
      eps = net(x, torch.full((batch_size,), int(model_steps[s])))
      x0 = (c['sqrt_recip_alphas_cumprod'][s] * x
            - c['sqrt_recipm1_alphas_cumprod'][s] * eps).clamp(-1.0, 1.0)
      x = c['posterior_mean_coef1'][s] * x0 + c['posterior_mean_coef2'][s] * x
      if s > 0:
        x = x + float(np.exp(0.5 * log_var[s])) * torch.randn_like(x)
    return x

  # XLA's CPU code flushes denormal floats to zero; torch computes them, and the sampler's
  # softmaxes and late steps produce many (10x to 60x slower here). Time both in the same mode.
  return Comparison(lambda: jax_out.update(x=sample(x_T, sample_key)),
                    lambda: jax.block_until_ready(jax_out['x']), torch_chain, flops, 'images',
                    items=batch_size * chain / num_timesteps, rounds_of_one=True,
                    torch_setup=torch.set_flush_denormal,
                    info={'chain_steps': num_timesteps, 'timed_steps': chain,
                          'params': zoo.num_params(params)},
                    jax_hlo=lambda: sample.lower(x_T, sample_key).compile().as_text())


@benchmark
def clip_step() -> Comparison:
  """CLIP's training step (image-text pairs per second) at the shapes_vit preset of
  experiments/configs/clip.py: a 4-layer ViT image tower and a 4-layer text transformer, width 128.

  JAX: the experiment's train step (symmetric contrastive loss over the batch through the shard_map
  all-gather, AdamW with beta2 0.98, eps 1e-6, decay off gains and biases, the log-scale clip).
  PyTorch: the same towers written with `nn.MultiheadAttention` (QuickGELU, ln_pre, causal text
  mask, end-of-text feature, bias-free projections), the same loss and AdamW parameter groups,
  started from the JAX parameters: the parameter counts must match and the losses agree before
  timing. The learning-rate schedule is left out on the PyTorch side (it does not change the
  work of a step).
  """
  import math
  import tempfile

  import jax
  import numpy as np
  import torch
  from torch import nn

  from experiments import clip as experiment_lib
  from experiments.configs import clip as configs
  from jaxpapers import zoo
  from jaxpapers.contrastive import clip
  from jaxpapers.train import devices

  batch_size = bench_batch_size()
  config = configs.get_config('shapes_vit')
  # The step needs no data: build the experiment over the tiny set, the model is the preset's.
  config.data.update(name='shapes_captions_tiny', data_dir=tempfile.mkdtemp())
  experiment = experiment_lib.CLIPExperiment(config, devices.make_mesh())
  m = experiment.model
  rng = np.random.default_rng(0)
  train = experiment.data.train
  rows = [train[int(i)] for i in rng.integers(len(train), size=batch_size)]
  images, tokens = (np.stack([row[key] for row in rows]) for key in ('image', 'tokens'))
  state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  params = jax.tree.map(np.asarray, state.params)
  jax_step, jax_sync, flops, hlo = experiment_step(experiment, state,
                                                   {'image': images, 'tokens': tokens})

  class QuickGELU(nn.Module):
    def forward(self, x):
      return x * torch.sigmoid(1.702 * x)

  class Block(nn.Module):
    def __init__(self, width, heads):
      super().__init__()
      self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
      self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
      self.mlp = nn.Sequential(nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width))

    def forward(self, x, mask):
      h = self.ln_1(x)
      x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
      return x + self.mlp(self.ln_2(x))

  class TorchCLIP(nn.Module):
    def __init__(self, grid, vocab_size):
      super().__init__()
      w, t, p = m.vision_width, m.text_width, m.vision_patch_size
      self.conv1 = nn.Conv2d(3, w, p, stride=p, bias=False)
      self.class_embedding = nn.Parameter(torch.zeros(w))
      self.visual_positions = nn.Parameter(torch.zeros(grid + 1, w))
      self.ln_pre, self.ln_post = nn.LayerNorm(w), nn.LayerNorm(w)
      self.visual_blocks = nn.ModuleList(Block(w, m.vision_heads) for _ in range(m.vision_layers))
      self.proj = nn.Parameter(torch.zeros(w, m.embed_dim))
      self.token_embedding = nn.Embedding(vocab_size, t)
      self.text_positions = nn.Parameter(torch.zeros(m.context_length, t))
      self.text_blocks = nn.ModuleList(Block(t, m.text_heads) for _ in range(m.text_layers))
      self.ln_final = nn.LayerNorm(t)
      self.text_projection = nn.Parameter(torch.zeros(t, m.embed_dim))
      self.logit_scale = nn.Parameter(torch.tensor(0.0))
      causal = torch.full((m.context_length, m.context_length), float('-inf')).triu(1)
      self.register_buffer('causal', causal)

    def forward(self, images, tokens):
      x = self.conv1(images).flatten(2).transpose(1, 2)  # [B, patches (raster order), w]
      x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
      x = self.ln_pre(x + self.visual_positions)
      for block in self.visual_blocks:
        x = block(x, None)
      image = self.ln_post(x[:, 0]) @ self.proj
      x = self.token_embedding(tokens) + self.text_positions
      for block in self.text_blocks:
        x = block(x, self.causal)
      x = self.ln_final(x)[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
      return image, x @ self.text_projection, self.logit_scale

  def load(model):
    """Copies the JAX parameters in: kernels transposed, query/key/value fused as PyTorch's."""
    def t(x):
      return torch.from_numpy(np.ascontiguousarray(x))

    def block(module, p):
      a = p['attn']
      qkv = ('query', 'key', 'value')
      module.attn.in_proj_weight.data = t(np.concatenate([a[k]['kernel'].T for k in qkv]))
      module.attn.in_proj_bias.data = t(np.concatenate([a[k]['bias'] for k in qkv]))
      module.attn.out_proj.weight.data = t(a['out']['kernel'].T)
      module.attn.out_proj.bias.data = t(a['out']['bias'])
      for ln in ('ln_1', 'ln_2'):
        getattr(module, ln).weight.data, getattr(module, ln).bias.data = t(p[ln]['scale']), t(p[ln]['bias'])
      for i, name in ((0, 'c_fc'), (2, 'c_proj')):
        module.mlp[i].weight.data = t(p['mlp'][name]['kernel'].T)
        module.mlp[i].bias.data = t(p['mlp'][name]['bias'])

    def norm(module, p):
      module.weight.data, module.bias.data = t(p['scale']), t(p['bias'])

    v, x = params['visual'], params['text']
    model.conv1.weight.data = t(v['conv1']['kernel'].transpose(3, 2, 0, 1))
    model.class_embedding.data = t(v['class_embedding'])
    model.visual_positions.data = t(v['positional_embedding'])
    norm(model.ln_pre, v['ln_pre'])
    norm(model.ln_post, v['ln_post'])
    model.proj.data = t(v['proj'])
    for i, module in enumerate(model.visual_blocks):
      block(module, v['transformer'][f'resblocks_{i}'])
    model.token_embedding.weight.data = t(x['token_embedding']['embedding'])
    model.text_positions.data = t(x['positional_embedding'])
    for i, module in enumerate(model.text_blocks):
      block(module, x['transformer'][f'resblocks_{i}'])
    norm(model.ln_final, x['ln_final'])
    model.text_projection.data = t(x['text_projection'])
    model.logit_scale.data = t(params['logit_scale'])

  def torch_loss(image, text, log_scale):
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    logits = torch.clamp(log_scale.exp(), max=clip.MAX_LOGIT_SCALE) * image @ text.T
    labels = torch.arange(len(logits))
    return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2

  grid = (images.shape[1] // m.vision_patch_size) * (images.shape[2] // m.vision_patch_size)
  model = TorchCLIP(grid, experiment.tokenizer.vocab_size)
  load(model)
  count = sum(p.numel() for p in model.parameters())
  assert count == zoo.num_params(params), (count, zoo.num_params(params))
  x = torch.from_numpy(np.asarray(experiment_lib.normalize_images(images))).permute(0, 3, 1, 2).contiguous()
  y = torch.from_numpy(tokens).long()
  reference = clip.clip_loss(*experiment.model.apply({'params': params}, np.asarray(
      experiment_lib.normalize_images(images)), tokens))
  with torch.no_grad():
    np.testing.assert_allclose(float(torch_loss(*model(x, y))), float(reference), rtol=1e-4)
  o = config.optim
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': o.weight_decay},
                                 {'params': no_decay, 'weight_decay': 0.0}],
                                lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)

  def torch_step():
    optimizer.zero_grad(set_to_none=True)
    torch_loss(*model(x, y)).backward()
    optimizer.step()
    with torch.no_grad():
      model.logit_scale.clamp_(max=math.log(clip.MAX_LOGIT_SCALE))

  return Comparison(jax_step, jax_sync, torch_step, flops, 'pairs', items=batch_size,
                    info={'params': count}, jax_hlo=hlo)


@benchmark
def resnet20() -> Comparison:
  """ResNet-20 for CIFAR-10 (He et al. 2015, arXiv:1512.03385, sec. 4.2), SGD momentum, 32x32x3.

  JAX: the train step of experiments/classify.py with the `cifar10_resnet20` preset (SGD, momentum
  0.9, weight decay 1e-4 on kernels), its on-device crops and flips switched off so both sides do
  the same work; the experiment is built on TFDS mock data (CIFAR-10 is not needed: the timed
  batch is random). PyTorch: the same network (option-A shortcuts: subsample and append zero
  channels; BN after every convolution; 269,722 parameters on both sides), loaded with the JAX
  parameters; the training-mode logits of both are compared before timing. The PyTorch optimiser
  decays the same parameters (kernels, not BN gains or biases). PyTorch is timed with its default
  threads and with one; the faster is compared. Use --batch_size=128 (the paper's).
  """
  import jax
  import numpy as np
  import tensorflow_datasets as tfds
  import torch
  from torch import nn
  from torch.nn import functional as F

  from experiments import classify
  from experiments.configs import classify as configs
  from jaxpapers import zoo
  from jaxpapers.train import devices

  batch_size = bench_batch_size()
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(batch_size, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, 10, size=batch_size).astype(np.int32)

  config = configs.get_config('cifar10_resnet20')
  config.data.update(random_crop_padding=0, random_flip=False)
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE):
    experiment = classify.Classify(config, devices.make_mesh())
  state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  params = jax.tree.map(np.array, state.params)  # writable, for torch

  class BasicBlock(nn.Module):

    def __init__(self, in_planes, planes, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.stride, self.extra = stride, planes - in_planes

    def forward(self, x):
      y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      shortcut = x[:, :, ::self.stride, ::self.stride]
      if self.extra:  # option A: zero channels appended after the identity ones, as the JAX model
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
      return F.relu(y + shortcut)

  class CifarResNet20(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
      blocks, in_planes = [], 16
      for stage, planes in enumerate((16, 32, 64)):
        for index in range(3):
          blocks.append(BasicBlock(in_planes, planes, 2 if stage and not index else 1))
          in_planes = planes
      self.blocks = nn.Sequential(*blocks)
      self.fc = nn.Linear(64, 10)

    def forward(self, x):
      x = self.blocks(F.relu(self.bn1(self.conv1(x))))
      return self.fc(x.mean(dim=(2, 3)))

  model = CifarResNet20().train()
  count = sum(p.numel() for p in model.parameters())
  assert count == zoo.num_params(params) == 269_722, (count, zoo.num_params(params))
  # Flax names, in order: conv1, bn1, layer{s}_{b}/{conv1,bn1,conv2,bn2}, fc.
  flax_modules = [params['conv1'], params['bn1']] + [
      params[f'layer{s}_{b}'][name] for s in (1, 2, 3) for b in range(3)
      for name in ('conv1', 'bn1', 'conv2', 'bn2')] + [params['fc']]
  torch_modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d,
                                                                nn.Linear))]
  with torch.no_grad():
    for target, source in zip(torch_modules, flax_modules, strict=True):
      if isinstance(target, nn.Conv2d):  # flax [kh, kw, in, out] -> torch [out, in, kh, kw]
        target.weight.copy_(torch.from_numpy(source['kernel'].transpose(3, 2, 0, 1).copy()))
      elif isinstance(target, nn.BatchNorm2d):
        target.weight.copy_(torch.from_numpy(source['scale']))
        target.bias.copy_(torch.from_numpy(source['bias']))
      else:
        target.weight.copy_(torch.from_numpy(source['kernel'].T.copy()))
        target.bias.copy_(torch.from_numpy(source['bias']))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels).long()
    jax_logits, _ = experiment.model.apply({'params': params, **state.model_state}, images,
                                           train=True, mutable=['batch_stats'])
    np.testing.assert_allclose(model(x).numpy(), jax_logits, rtol=1e-3, atol=1e-3)

  jax_step, jax_sync, flops, hlo = experiment_step(experiment, state,
                                                   {'image': images, 'label': labels})

  o = config.optim
  decayed = [p for p in model.parameters() if p.ndim > 1]
  others = [p for p in model.parameters() if p.ndim <= 1]
  optimizer = torch.optim.SGD([{'params': decayed, 'weight_decay': o.weight_decay},
                               {'params': others, 'weight_decay': 0.0}],
                              lr=o.learning_rate, momentum=o.momentum, nesterov=o.nesterov)

  torch_step = torch_train_step(model, optimizer, lambda model: F.cross_entropy(model(x), y))
  return Comparison(jax_step, jax_sync, torch_step, flops, 'steps',
                    info={'params': count}, jax_hlo=hlo)


@benchmark
def dcgan_step() -> Comparison:
  """One DCGAN round (Radford et al. 2015, arXiv:1511.06434) at 32x32 with the reference widths.

  JAX: the train step of experiments/gan.py with the `dcgan_shapes` preset at ngf = ndf = 64 (the
  reference DCGAN's widths on the 32x32 networks `dcgan_32_*`): one discriminator update on a real
  and a fake batch (separate batches, so their BatchNorm statistics never mix), then one generator
  update with the non-saturating loss, Adam(2e-4, 0.5) for both. PyTorch: the same two networks
  (transposed convolutions kernel 4, stride 2, padding 1; BatchNorm; no biases), loaded with the
  JAX parameters (flax's transposed-convolution kernels flipped), the same round with
  `binary_cross_entropy_with_logits`; generator images and discriminator logits of both are
  compared before timing. The experiment is built on TFDS mock data; the timed real batch is random.
  """
  import jax
  import numpy as np
  import tensorflow_datasets as tfds
  import torch
  from torch import nn
  from torch.nn import functional as F

  from experiments import gan
  from experiments.configs import gan as configs
  from jaxpapers import zoo
  from jaxpapers.train import devices

  batch_size = bench_batch_size()
  config = configs.get_config('dcgan_shapes')
  config.generator.features = config.discriminator.features = 64
  config.data.update(name='cifar10', eval_split='test', in_memory=False)  # any 32x32x3 set: mocked
  config.evals = {}
  config.ema_decay = 0.0  # the paper keeps no average; the PyTorch side keeps none either
  config.train.batch_size = batch_size
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE):
    experiment = gan.GAN(config, devices.make_mesh())
  state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  real = np.random.default_rng(0).uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32)
  g, d = state.players['generator'], state.players['discriminator']
  g_params, d_params = jax.tree.map(np.array, g.params), jax.tree.map(np.array, d.params)

  def norm(features):
    return nn.BatchNorm2d(features, eps=1e-5, momentum=0.1)

  z_dim, ngf = experiment.z_dim, 64
  generator = nn.Sequential(
      nn.ConvTranspose2d(z_dim, 4 * ngf, 4, 1, 0, bias=False), norm(4 * ngf), nn.ReLU(),
      nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False), norm(2 * ngf), nn.ReLU(),
      nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False), norm(ngf), nn.ReLU(),
      nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh()).train()
  discriminator = nn.Sequential(
      nn.Conv2d(3, ngf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
      nn.Conv2d(ngf, 2 * ngf, 4, 2, 1, bias=False), norm(2 * ngf), nn.LeakyReLU(0.2),
      nn.Conv2d(2 * ngf, 4 * ngf, 4, 2, 1, bias=False), norm(4 * ngf), nn.LeakyReLU(0.2),
      nn.Conv2d(4 * ngf, 1, 4, 1, 0, bias=False)).train()
  for model, params in ((generator, g_params), (discriminator, d_params)):
    assert sum(p.numel() for p in model.parameters()) == zoo.num_params(params)
    convs = [m for m in model if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    norms = [m for m in model if isinstance(m, nn.BatchNorm2d)]
    prefix = 'ConvTranspose' if model is generator else 'Conv'
    with torch.no_grad():
      for i, module in enumerate(convs):
        kernel = params[f'{prefix}_{i}']['kernel']  # [kh, kw, in, out]
        if prefix == 'ConvTranspose':  # flax applies it unflipped to the dilated input
          weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # torch [in, out, kh, kw]
        else:
          weight = kernel.transpose(3, 2, 0, 1)  # torch [out, in, kh, kw]
        module.weight.copy_(torch.from_numpy(weight.copy()))
      for i, module in enumerate(norms):
        module.weight.copy_(torch.from_numpy(params[f'BatchNorm_{i}']['scale']))
        module.bias.copy_(torch.from_numpy(params[f'BatchNorm_{i}']['bias']))

  z = np.random.default_rng(1).standard_normal((batch_size, z_dim)).astype(np.float32)
  to_torch = lambda images: torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    jax_images, _ = experiment.generate(g.params, g.model_state, z, None)
    np.testing.assert_allclose(generator(torch.from_numpy(z)[:, :, None, None]).numpy(),
                               to_torch(jax_images).numpy(), rtol=1e-3, atol=1e-3)
    jax_logits, _ = experiment.discriminate(d.params, d.model_state, real, None,
                                            jax.random.PRNGKey(0))
    np.testing.assert_allclose(discriminator(to_torch(real)).reshape(-1).numpy(), jax_logits,
                               rtol=1e-3, atol=1e-3)

  jax_step, jax_sync, flops, hlo = experiment_step(experiment, state, {'image': real})

  o = config.optim
  g_opt = torch.optim.Adam(generator.parameters(), lr=o.generator.learning_rate,
                           betas=(o.generator.b1, o.generator.b2))
  d_opt = torch.optim.Adam(discriminator.parameters(), lr=o.discriminator.learning_rate,
                           betas=(o.discriminator.b1, o.discriminator.b2))
  x_real = to_torch(real)
  ones, zeros = torch.ones(batch_size), torch.zeros(batch_size)
  bce = F.binary_cross_entropy_with_logits

  def torch_step():
    noise = torch.randn(batch_size, z_dim, 1, 1)
    d_opt.zero_grad(set_to_none=True)
    fake = generator(noise)
    d_loss = (bce(discriminator(x_real).reshape(-1), ones)
              + bce(discriminator(fake.detach()).reshape(-1), zeros))
    d_loss.backward()
    d_opt.step()
    g_opt.zero_grad(set_to_none=True)
    bce(discriminator(generator(torch.randn(batch_size, z_dim, 1, 1))).reshape(-1), ones).backward()
    g_opt.step()

  return Comparison(jax_step, jax_sync, torch_step, flops, 'steps',
                    info={'generator_params': zoo.num_params(g_params),
                          'discriminator_params': zoo.num_params(d_params)}, jax_hlo=hlo)


@benchmark
def gpt2_small() -> Comparison:
  """GPT-2 small (124,439,808 parameters), one AdamW step on `--batch_size` sequences of
  `--seq_len` tokens, dropout off on both sides.

  JAX: `jaxpapers.transformers.gpt` under jit, loss on the next tokens. PyTorch: Hugging Face's
  `GPT2LMHeadModel` from the same configuration (the model the converters are tested against),
  eager mode with its default attention. Both start from the same weights (converted with
  `hf_convert.gpt2_params`) and their logits are compared before timing. Reported as tokens/s.
  """
  import jax
  import numpy as np
  import optax
  import torch
  import transformers

  from jaxpapers import zoo
  from jaxpapers.transformers import hf_convert

  batch_size, seq_len = bench_batch_size(), _SEQ_LEN.value
  config = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
  torch.manual_seed(0)
  hf = transformers.GPT2LMHeadModel(config)
  model = hf_convert.gpt2_model(config)
  params = hf_convert.gpt2_params(hf.state_dict())
  assert zoo.num_params(params) == zoo.count_params('gpt2_small') == 124_439_808
  tokens = np.random.default_rng(0).integers(0, config.vocab_size, (batch_size, seq_len + 1))
  inputs, targets = tokens[:, :-1].astype(np.int32), tokens[:, 1:].astype(np.int32)
  with torch.no_grad():
    np.testing.assert_allclose(jax.jit(model.apply)({'params': params}, inputs[:1, :16]),
                               hf(torch.from_numpy(inputs[:1, :16]).long()).logits.numpy(),
                               rtol=1e-3, atol=1e-3)

  tx = optax.adamw(1e-4, weight_decay=0.01)

  def loss_fn(params, inputs, targets):
    logits = model.apply({'params': params}, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  def train_step(params, opt_state, inputs, targets):
    grads = jax.grad(loss_fn)(params, inputs, targets)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  holder = {'state': (jax.device_put(params), jax.jit(tx.init)(params))}
  batch = jax.device_put((inputs, targets))
  flops = matmul_flops(train_step, *holder['state'], *batch)
  train_step = jax.jit(train_step, donate_argnums=(0, 1), compiler_options=step_options())

  def jax_step():
    holder['state'] = train_step(*holder['state'], *batch)

  optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.01)
  x, y = torch.from_numpy(inputs).long(), torch.from_numpy(targets).long()

  def loss(model):
    logits = model(x).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

  return Comparison(jax_step, lambda: jax.block_until_ready(holder['state']),
                    torch_train_step(hf, optimizer, loss), flops, 'tokens',
                    items=batch_size * seq_len,
                    info={'seq_len': seq_len, 'transformers_version': transformers.__version__},
                    jax_hlo=lambda: train_step.lower(*holder['state'], *batch).compile().as_text())


# (where, batch, input size, in channels, out channels, kernel, stride, padding on each side)
CONV_LAYERS = [('resnet20 stage 1', 128, 32, 16, 16, 3, 1, 1),
               ('resnet20 stage 2', 128, 16, 32, 32, 3, 1, 1),
               ('resnet20 stage 3', 128, 8, 64, 64, 3, 1, 1),
               ('ddpm 8x8 block', 64, 8, 32, 32, 3, 1, 1),
               ('ddpm 8x8 up block (skip concat)', 64, 8, 96, 32, 3, 1, 1),
               ('ddpm 4x4 block', 64, 4, 64, 64, 3, 1, 1),
               ('dcgan discriminator 16 -> 8', 64, 16, 64, 128, 4, 2, 1),
               ('dcgan discriminator 8 -> 4', 64, 8, 128, 256, 4, 2, 1),
               ('dcgan generator phase 8 -> 16', 64, 9, 128, 64, 2, 1, 0)]


def conv_layers() -> list[dict]:
  """GFLOP/s of single forward convolutions (`CONV_LAYERS`): JAX's `lax.conv_general_dilated`
  (NHWC/HWIO) under XLA's default kernels and under oneDNN's (`devices.CPU_KERNELS`), against
  PyTorch's `conv2d` in NCHW (the benchmarks' PyTorch models) and channels-last (oneDNN's own
  layout), default threads, timed in alternation like the benchmarks, about 5 GFLOP per round."""
  results = []
  for where, batch, size, c_in, c_out, k, stride, pad in CONV_LAYERS:
    out_size = (size + 2 * pad - k) // stride + 1
    flops = 2.0 * batch * out_size ** 2 * c_out * k * k * c_in
    rates = time_conv_layer((batch, size, size, c_in), (k, k, c_in, c_out), stride, pad, flops)
    row = {'layer': where, 'input': [batch, size, size, c_in], 'out_channels': c_out,
           'kernel': k, 'stride': stride, 'padding': pad}
    row.update({f'{name}_gflops': round(rate * flops / 1e9, 1) for name, rate in rates.items()})
    best_torch = max(rates['torch_nchw'], rates['torch_channels_last'])
    row.update({f'{name}_over_best_torch': round(rates[name] / best_torch, 2)
                for name in ('jax_xla', 'jax_onednn')})
    print(json.dumps(row), flush=True)
    results.append(row)
  return results


# ResNet-20's convolutions (sec. 4.2, batch 128): (layers, input size, C_in, C_out, stride), all
# 3x3 with padding 1. The stem (C_in 3) needs no input gradient.
RESNET20_CONVS = [(1, 32, 3, 16, 1), (6, 32, 16, 16, 1), (1, 32, 16, 32, 2), (5, 16, 32, 32, 1),
                  (1, 16, 32, 64, 2), (5, 8, 64, 64, 1)]
CONV_PASSES = ('forward', 'input_gradient', 'kernel_gradient')


def conv_passes() -> dict:
  """Milliseconds of each convolution pass of ResNet-20's training step (`RESNET20_CONVS`), one
  layer at a time: JAX's `lax.conv_general_dilated` and its autodiff gradients, compiled under the
  `cifar10_resnet20` preset's `cpu_kernels`, against PyTorch's `conv2d` and
  `convolution_backward` (oneDNN), the faster of NCHW and channels-last. Values are compared
  first; the sides are timed in alternation. The per-step sums say how much of a whole step's
  time the convolution kernels alone take on each side."""
  import numpy as np

  from experiments.configs import classify as configs
  from jaxpapers.train import devices

  kernels = configs.get_config('cifar10_resnet20').train.cpu_kernels
  options = devices.compiler_options(kernels)
  rng = np.random.default_rng(0)
  totals = {side: dict.fromkeys(CONV_PASSES, 0.0) for side in ('jax', 'torch')}
  layers = []
  for count, size, c_in, c_out, stride in RESNET20_CONVS:
    out_size = (size - 1) // stride + 1
    x = rng.standard_normal((128, size, size, c_in), np.float32)
    w = rng.standard_normal((3, 3, c_in, c_out), np.float32) / np.float32(np.sqrt(9 * c_in))
    dy = rng.standard_normal((128, out_size, out_size, c_out), np.float32)
    row = {'layers': count, 'input': list(x.shape), 'out_channels': c_out, 'stride': stride,
           'kernels': kernels}
    for name in CONV_PASSES if c_in > 3 else ('forward', 'kernel_gradient'):
      runs = conv_pass_runs(name, x, w, dy, stride, options)
      rates = time_rounds(runs, {}, 40)
      jax_ms = 1e3 / rates['jax']
      torch_ms = 1e3 / max(rates['torch_nchw'], rates['torch_channels_last'])
      row[name] = {'jax_ms': round(jax_ms, 2), 'torch_ms': round(torch_ms, 2),
                   'jax_over_torch': round(torch_ms / jax_ms, 2)}
      totals['jax'][name] += count * jax_ms
      totals['torch'][name] += count * torch_ms
    print(json.dumps(row), flush=True)
    layers.append(row)
  per_step = {side: {**{k: round(v, 1) for k, v in t.items()}, 'total': round(sum(t.values()), 1)}
              for side, t in totals.items()}
  print(json.dumps({'per_step_ms': per_step}), flush=True)
  return {'layers': layers, 'per_step_ms': per_step}


def conv_pass_runs(name: str, x, w, dy, stride: int, options: dict | None) -> dict:
  """`time_rounds`' runs of one pass of a 3x3, padding-1 convolution (NHWC x, HWIO w, output
  gradient dy): JAX, and PyTorch in NCHW and channels-last, after checking that they agree."""
  import jax
  import numpy as np
  import torch
  from torch.nn import functional as F

  def conv(x, w):
    return nhwc_conv(x, w, stride, 1)

  jax_pass = jax.jit({
      'forward': lambda x, w, dy: conv(x, w),
      'input_gradient': lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0],
      'kernel_gradient': lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]}[name],
      compiler_options=options)
  arrays = [jax.device_put(a) for a in (x, w, dy)]
  out = {}
  runs = {'jax': (lambda: out.update(y=jax_pass(*arrays)), lambda: out['y'].block_until_ready())}

  def torch_pass(layout):
    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    xt, wt, dyt = (torch.from_numpy(a).permute(*perm).contiguous(memory_format=fmt)
                   for a, perm in ((x, (0, 3, 1, 2)), (w, (3, 2, 0, 1)), (dy, (0, 3, 1, 2))))
    if name == 'forward':
      return lambda: F.conv2d(xt, wt, stride=stride, padding=1)
    wanted = [name == 'input_gradient', name == 'kernel_gradient', False]
    return lambda: torch.ops.aten.convolution_backward(
        dyt, xt, wt, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1,
        wanted)[0 if name == 'input_gradient' else 1]

  with torch.inference_mode():
    for layout in ('nchw', 'channels_last'):
      step = torch_pass(layout)
      reference = step().permute(*((2, 3, 1, 0) if name == 'kernel_gradient' else (0, 2, 3, 1)))
      np.testing.assert_allclose(np.asarray(jax_pass(*arrays)), reference.numpy(), rtol=1e-3,
                                 atol=1e-4 * float(reference.abs().max()))
      runs[f'torch_{layout}'] = (step, lambda: None)
  return runs


def nhwc_conv(x, w, stride: int, pad: int):
  """The single-layer timings' JAX convolution: NHWC input, HWIO kernel, symmetric padding."""
  import jax
  return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def time_conv_layer(x_shape, w_shape, stride: int, pad: int, flops: float) -> dict[str, float]:
  """Convolutions per second of one layer on each side (outputs compared first)."""
  import math

  import jax
  import numpy as np
  import torch
  from torch.nn import functional as F

  from jaxpapers.train import devices

  rng = np.random.default_rng(0)
  x = rng.standard_normal(x_shape).astype(np.float32)
  w = rng.standard_normal(w_shape).astype(np.float32)
  xj, wj = jax.device_put(x), jax.device_put(w)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
  xcl = xt.contiguous(memory_format=torch.channels_last)
  reference = F.conv2d(xt, wt, stride=stride, padding=pad).permute(0, 2, 3, 1).numpy()
  runs = {}
  for kernels in ('xla', 'onednn'):
    conv = jax.jit(lambda x, w: nhwc_conv(x, w, stride, pad),
                   compiler_options=devices.compiler_options(kernels))
    np.testing.assert_allclose(np.asarray(conv(xj, wj)), reference, rtol=1e-3, atol=1e-3)
    out = {}
    runs[f'jax_{kernels}'] = (lambda conv=conv, out=out: out.update(y=conv(xj, wj)),
                              lambda out=out: out['y'].block_until_ready())
  with torch.inference_mode():
    return time_rounds({
        **runs,
        'torch_nchw': (lambda: F.conv2d(xt, wt, stride=stride, padding=pad), lambda: None),
        'torch_channels_last': (lambda: F.conv2d(xcl, wt, stride=stride, padding=pad),
                                lambda: None)}, {}, max(5, math.ceil(5e9 / flops)))


def compare_options(names: list[str], option_sets: list[str]) -> list[dict]:
  """Each benchmark's JAX step built under every option set, timed in alternation: steps/s and
  the ratio to the first set."""
  results = []
  for name in names:
    _current['name'] = name
    runs = {}
    for text in option_sets:
      _current['options'] = parse_options(text)
      c = BENCHMARKS[name]()
      runs[text] = (c.jax_step, c.jax_sync)
    del _current['options']
    rates = time_rounds(runs, {}, bench_steps())
    first = rates[option_sets[0]]
    row = {'benchmark': name, 'jax_steps_per_s': rates,
           'over_first': {text: rate / first for text, rate in rates.items()}}
    print(json.dumps(row), flush=True)
    results.append(row)
  return results


def main(argv):
  import jax
  start = time.perf_counter()
  if _CONV_LAYERS.value or _CONV_PASSES.value:
    if argv[1:] or _ALL.value or (_CONV_LAYERS.value and _CONV_PASSES.value):
      raise app.UsageError('--conv_layers and --conv_passes time their own lists of layers: '
                           'pass one of them and name no benchmarks')
    output = ({'conv_layers': conv_layers()} if _CONV_LAYERS.value
              else {'conv_passes': conv_passes()})
  else:
    names = list(BENCHMARKS) if _ALL.value else argv[1:]
    if not names or (_ALL.value and argv[1:]):
      raise app.UsageError(f'name benchmarks or pass --all; known: {", ".join(BENCHMARKS)}')
    for name in names:
      if name not in BENCHMARKS:
        raise app.UsageError(f'unknown benchmark {name!r}; known: {", ".join(BENCHMARKS)}')
    if _COMPARE_OPTIONS.value:
      output = {'compare_options': compare_options(names, _COMPARE_OPTIONS.value)}
    else:
      roof = roofline()
      print(json.dumps({'benchmark': 'roofline_matmul_2048', **roof}), flush=True)
      results = []
      for name in names:
        _current['name'] = name
        result = {'benchmark': name, 'batch_size': bench_batch_size()}
        result.update(compare(BENCHMARKS[name](), roof['jax_gflops']))
        result.update(roofline_gflops=roof['jax_gflops'], device=jax.devices()[0].device_kind,
                      jax_version=jax.__version__, cpu_count=os.cpu_count(),
                      machine=platform.machine())
        print(json.dumps(result), flush=True)
        results.append(result)
      output = {'roofline': roof, 'benchmarks': results}
  print(f'# done in {time.perf_counter() - start:.0f} s')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump({**output, 'wall_s': time.perf_counter() - start, 'jax_version': jax.__version__},
                f, indent=1)


if __name__ == '__main__':
  app.run(main)
