"""Every test runs on 8 simulated CPU devices so sharded code paths are exercised."""
import os

# LLVM optimisation level 0: tests check values, not speed, and XLA:CPU then compiles about twice
# as fast (the StyleGAN2 experiment's test: 80 -> 41 s of CPU) while the compiled steps of the
# longest-running tests (the kill-and-resume runs) take no longer.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8 '
                      '--xla_backend_optimization_level=0')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402  (must come after the flags above)

# Sharded and single-device results are compared to float tolerance; use exact matmuls.
jax.config.update('jax_default_matmul_precision', 'highest')

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def loss_network_dir(tmp_path_factory):
  """A random-weight VGG-19-layout loss network (`vgg19_bn_mini`, widths 4 ... 32) saved as
  scripts/convert.py saves converted weights (tests/style and the translation experiment use it)."""
  import jax.numpy as jnp

  from jaxpapers import zoo
  from jaxpapers.train import init_from
  directory = str(tmp_path_factory.mktemp('vgg') / 'converted')
  model = zoo.build('vgg19_bn_mini', width_divisor=16)
  variables = jax.jit(lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False))(
      jax.random.key(0))
  init_from.save_variables(directory, variables, preset='vgg19_bn_mini')
  return directory


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  """A TFDS data directory with the offline digits dataset built in it (once per test session)."""
  from jaxpapers.data import pipeline
  directory = str(tmp_path_factory.mktemp('tfds'))
  pipeline.load_source('sklearn_digits', 'train', directory)
  return directory


def _script(name: str):
  """scripts/<name>.py as a module, executed once per process: executing it again would define its
  absl flags twice. Scripts that tests import together must not share flag names."""
  import importlib.util
  import sys
  module_name = f'{name}_script'
  if module_name not in sys.modules:
    path = os.path.join(os.path.dirname(__file__), '..', 'scripts', f'{name}.py')
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[module_name] = module
  return sys.modules[module_name]


@pytest.fixture(scope='session')
def convert_script():
  """scripts/convert.py (tests/train and tests/parity both use it)."""
  return _script('convert')


@pytest.fixture(scope='session')
def vild_precompute_script():
  """scripts/vild_precompute.py (the ViLD experiment test)."""
  return _script('vild_precompute')


@pytest.fixture(scope='session')
def vild_diagnose_script():
  """scripts/vild_diagnose.py (the ViLD tests)."""
  return _script('vild_diagnose')
