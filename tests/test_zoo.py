"""The zoo: every preset is built abstractly and counted, and matches its reference count."""

import pytest

from jaxpapers import zoo
from jaxpapers.errors import ConfigError


def test_count_params_of_a_known_model():
  # LeNet-5 with full C3 connectivity: 156 + 2,416 + 48,120 + 10,164 + 850.
  assert zoo.count_params('lenet5') == 61_706


def test_names_are_sorted_and_unknown_names_list_the_known_ones():
  names = zoo.names()
  assert names == sorted(names) and 'digits_cnn' in names
  with pytest.raises(KeyError, match='known presets: .*lenet5'):
    zoo.get('lenet6')


@pytest.mark.parametrize('name', zoo.names())
def test_preset_matches_its_reference_count(name):
  preset = zoo.get(name)
  count = zoo.count_params(name)
  assert count > 0
  if preset.reference_params is not None:
    assert count == preset.reference_params, (
        f'{name}: {count:,} parameters, reference {preset.reference_params:,} '
        f'({preset.reference_source})')


def test_every_module_that_registers_presets_is_listed():
  """The zoo imports `MODEL_MODULES` only: a model file left out of it would vanish silently."""
  import pathlib
  root = pathlib.Path(zoo.__file__).parent
  registering = {
      'jaxpapers.' + '.'.join(path.relative_to(root).with_suffix('').parts)
      for path in root.rglob('*.py') if 'zoo.register(' in path.read_text()} - {zoo.__name__}
  assert registering == set(zoo.MODEL_MODULES)


def test_build_with_overrides_of_fields_and_of_a_config_dataclass():
  unet = zoo.build('ddpm_tiny', dropout=0.3)
  assert unet.dropout == 0.3 and zoo.build('ddpm_tiny').dropout == 0.1
  transformer = zoo.build('transformer_base', vocab_size=20, num_encoder_layers=1)
  assert transformer.config.vocab_size == 20 and transformer.config.num_encoder_layers == 1
  with pytest.raises(ConfigError, match="has no field 'widht'; its fields: .*ch_mult"):
    zoo.build('ddpm_tiny', widht=3)
  with pytest.raises(ConfigError, match="model name 'lenet6': unknown zoo preset"):
    zoo.build_from_config({'name': 'lenet6'})
