"""Config values checked before anything is built: one line naming the key (exit status 2)."""

import pytest

from experiments.configs import classify as classify_configs
from jaxpapers.errors import ConfigError
from jaxpapers.train import config_checks


@pytest.mark.parametrize('key, value, expected', [
    ('train.steps', -5, 'config.train.steps=-5 must be a positive integer'),
    ('train.steps', 0, 'config.train.steps=0 must be a positive integer'),
    ('train.batch_size', 0, 'config.train.batch_size=0 must be a positive integer'),
    ('train.log_every', 0, 'config.train.log_every=0 must be a positive integer'),
    ('train.checkpoint_every', -1, 'config.train.checkpoint_every=-1 must be a positive integer'),
    ('train.max_to_keep', 0, 'config.train.max_to_keep=0 must be a positive integer'),
    ('train.eval_every', -10, 'config.train.eval_every=-10 must be a non-negative integer'),
    ('optim.learning_rate', float('nan'), 'config.optim.learning_rate=nan must be a finite non-negative'),
    ('optim.learning_rate', float('inf'), 'config.optim.learning_rate=inf must be a finite non-negative'),
    ('optim.learning_rate', -1e-3, 'config.optim.learning_rate=-0.001 must be a finite non-negative'),
])
def test_a_bad_value_is_one_line_naming_the_key(key, value, expected):
  config = classify_configs.get_config('tiny')
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(ConfigError) as error:
    config_checks.check_values(config)
  assert str(error.value).startswith(expected) and '\n' not in str(error.value), str(error.value)


def test_every_learning_rate_is_checked_wherever_it_sits():
  config = classify_configs.get_config('tiny')
  config.discriminator = {'optim': {'learning_rate': float('nan')}}  # e.g. a second player's
  with pytest.raises(ConfigError, match=r'config\.discriminator\.optim\.learning_rate=nan'):
    config_checks.check_values(config)


def test_good_values_pass_and_eval_every_0_means_no_periodic_eval():
  config = classify_configs.get_config('tiny')
  config.train.eval_every = 0
  config_checks.check_values(config)
