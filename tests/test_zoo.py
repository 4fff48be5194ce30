"""The zoo: every preset is built abstractly and counted, and matches its reference count."""

import pytest

from jaxpapers import zoo


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
