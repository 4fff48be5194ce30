"""The layers stay apart: the library never imports the applications, the training core no model
family, and configs nothing of the training core."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILIES = ('convnets', 'contrastive', 'diffusion', 'gans', 'nn', 'recurrent', 'selfsup',
            'distill', 'metric',
            'transformers')


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
  return names


def test_the_library_never_imports_experiments_or_scripts():
  offenders = {str(path.relative_to(ROOT)): sorted(name for name in _imports(path)
                                                   if name.split('.')[0] in ('experiments', 'scripts'))
               for path in (ROOT / 'jaxpapers').rglob('*.py')}
  assert not {path: names for path, names in offenders.items() if names}


def test_configs_import_nothing_from_the_training_core():
  for path in (ROOT / 'experiments' / 'configs').glob('*.py'):
    assert not [n for n in _imports(path) if n.startswith('jaxpapers.train')], path


def test_the_training_core_loads_no_model_family():
  """Checked on what importing the loop and the CLI actually loads, indirect imports included."""
  families = tuple(f'jaxpapers.{family}' for family in FAMILIES)
  code = ('import sys; import jaxpapers.train.cli, jaxpapers.train.loop; '
          f'print(sorted(m for m in sys.modules if m.startswith({families!r})))')
  loaded = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
  assert loaded == '[]'


def test_importing_any_module_starts_no_jax_backend():
  """`jax.distributed.initialize` must run before the first backend call, so a module-level
  `jnp.array` anywhere in an experiment's imports breaks every multi-host run."""
  modules = sorted('.'.join(path.relative_to(ROOT).with_suffix('').parts)
                   for top in ('jaxpapers', 'experiments')
                   for path in (ROOT / top).rglob('*.py') if path.name != '__main__.py')
  code = ('import importlib, sys\n'
          'from jax._src import xla_bridge\n'
          f'for name in {modules!r}:\n'
          '  importlib.import_module(name)\n'
          '  if xla_bridge._backends:\n'
          '    sys.exit(name)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
