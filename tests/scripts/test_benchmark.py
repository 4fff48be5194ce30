"""scripts/benchmark.py's op profile, on a jitted convolution (no PyTorch needed)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CODE = '''
import importlib.util, json, sys
import jax, jax.numpy as jnp
spec = importlib.util.spec_from_file_location('benchmark', 'scripts/benchmark.py')
benchmark = sys.modules['benchmark'] = importlib.util.module_from_spec(spec)  # for dataclasses
spec.loader.exec_module(benchmark)
from jaxpapers.train import devices
conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC')),
               compiler_options=devices.compiler_options(sys.argv[2]))  # CPU kernels by name
x, k = jnp.ones((8, 32, 32, 16)), jnp.ones((3, 3, 16, 16))
out = {}
comparison = benchmark.Comparison(jax_step=lambda: out.update(y=conv(x, k)),
                                  jax_sync=lambda: out['y'].block_until_ready(),
                                  torch_step=None, flops=0.0, unit='steps',
                                  jax_hlo=lambda: conv.lower(x, k).compile().as_text())
comparison.jax_step()
print(json.dumps(benchmark.top_ops(comparison, 3, sys.argv[1])))
'''


def traced_profile(tmp_path, cpu_kernels: str) -> dict:
  result = subprocess.run([sys.executable, '-c', CODE, str(tmp_path), cpu_kernels], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, 'XLA_FLAGS': ''})
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_top_ops_names_the_traced_convolution_and_its_kind(tmp_path):
  profile = traced_profile(tmp_path, 'xla')
  ops = profile['top_ops']
  assert ops and all(op['ms'] > 0 for op in ops), ops
  assert 0.99 <= sum(op['share'] for op in ops) <= 1.0 + 1e-6  # the one op and little else
  assert 'conv' in ops[0]['op'] or 'ynn' in ops[0]['op'], ops
  # Classified from the compiled HLO: the convolution, with its output's shape.
  assert ops[0]['kind'] == 'convolution' and ops[0]['shape'] == 'f32[8,32,32,16]', ops
  assert profile['op_kinds']['convolution'] >= 0.99, profile['op_kinds']


def _load_benchmark():
  import importlib.util
  spec = importlib.util.spec_from_file_location('benchmark', os.path.join(ROOT, 'scripts/benchmark.py'))
  module = sys.modules['benchmark'] = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_compare_options_parses_option_sets_and_overrides_the_presets():
  from absl import app
  import pytest
  benchmark = _load_benchmark()
  assert benchmark.parse_options('defaults') is None
  assert benchmark.parse_options(
      'xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE;'
      'xla_cpu_enable_fast_math=False;xla_cpu_prefer_vector_width=512') == {
          'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE',
          'xla_cpu_enable_fast_math': False, 'xla_cpu_prefer_vector_width': 512}
  with pytest.raises(app.UsageError, match='not key=value'):
    benchmark.parse_options('xla_cpu_enable_fast_math')
  preset = {'xla_cpu_enable_fast_math': False}
  assert benchmark.step_options(preset) is preset  # no comparison running: the preset's own
  benchmark._current['options'] = None  # comparing XLA's defaults: the preset's are dropped
  assert benchmark.step_options(preset) is None


def test_top_ops_names_a_onednn_convolution_by_its_traced_name(tmp_path):
  ops = traced_profile(tmp_path, 'onednn')['top_ops']
  assert ops[0]['op'].endswith('__onednn$convolution'), ops  # the thunk's name, not the HLO's
  assert ops[0]['kind'] == 'convolution' and ops[0]['shape'] == 'f32[8,32,32,16]', ops
