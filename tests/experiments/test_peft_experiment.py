"""The PEFT table's experiment: pre-train on the source domain, adapt with each method."""

import json

import pytest

from experiments import peft_char_lm
from experiments.configs import peft_char_lm as configs
from jaxpapers.errors import ConfigError
from jaxpapers.train import devices, loop


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('pretrain'))
  loop.train_and_evaluate(peft_char_lm.PEFTCharLM(configs.get_config('tiny_pretrain'),
                                                  devices.make_mesh()), workdir)
  return workdir


def test_domains_split_the_corpus_by_topic_name():
  target, source = (peft_char_lm.domain_bytes('train', d) for d in ('target', 'source'))
  assert len(target) > 100_000 and len(source) > 100_000
  assert b'The "assert" statement' in target.tobytes()[:2000]
  assert b'"assert"' not in source.tobytes()[:2000]


@pytest.mark.parametrize('method', ['frozen', 'prefix', 'bitfit'])
def test_adaptation_starts_from_the_pretrained_run_and_counts_trainable_params(
    method, pretrained, tmp_path):
  config = configs.get_config('tiny')
  config.peft.update(method=method, pretrained=pretrained)
  experiment = peft_char_lm.PEFTCharLM(config, devices.make_mesh())
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  saved = json.loads((tmp_path / 'results.json').read_text())['eval']
  assert {'target_bits_per_char', 'source_bits_per_char', 'trainable_params',
          'total_params'} <= set(saved)
  assert results['train_step_compilations'] == 1
  trainable, total = round(saved['trainable_params']), round(saved['total_params'])
  if method == 'frozen':
    assert trainable == 0
  elif method == 'prefix':  # 4 keys and 4 values of width 16 in the tiny model's one layer.
    assert trainable == 2 * 4 * 16 and total > 10 * trainable
  else:
    assert 0 < trainable < total / 5


def test_adaptation_without_a_pretrained_run_is_a_config_error():
  with pytest.raises(ConfigError, match='pretrained'):
    peft_char_lm.PEFTCharLM(configs.get_config('tiny'), devices.make_mesh())
