"""Tiny runs of the Transformer, char-LM and BERT-MLM experiments on the 8-device mesh."""

import math

import jax
import numpy as np
import optax
import pytest

from experiments import bert_mlm, char_lm, transformer
from experiments.configs import bert_mlm as bert_configs
from experiments.configs import char_lm as char_configs
from experiments.configs import transformer as transformer_configs
from jaxpapers import zoo
from jaxpapers.data import sequence_tasks, text_corpus
from jaxpapers.errors import ConfigError
from jaxpapers.train import checkpoint, devices, loop, metrics, optim


def _run(experiment_class, config, workdir):
  assert jax.device_count() == 8
  experiment = experiment_class(config, devices.make_mesh())
  return experiment, loop.train_and_evaluate(experiment, str(workdir))


def _train_loss_fell(workdir):
  losses = metrics.read_history(str(workdir), 'train/')['loss'][1]
  assert losses[-1] < losses[0], losses


def test_transformer_tiny_run_reports_teacher_forced_and_decoded_accuracy(tmp_path):
  config = transformer_configs.get_config('tiny')
  experiment, results = _run(transformer.Transduction, config, tmp_path)
  assert results['train_step_compilations'] == 1
  assert set(results['eval']) == {'loss', 'token_accuracy', 'sequence_accuracy', 'greedy_accuracy',
                                  'beam_accuracy'}
  assert all(0.0 <= results['eval'][k] <= 1.0 for k in results['eval'] if k != 'loss')
  _train_loss_fell(tmp_path)
  # The per-token metrics are means over every target token of the validation split (40 strings
  # in batches of 16: the last batch is padding-masked).
  d = config.data
  split = sequence_tasks.make_splits(d.task, d.seed, {'validation': d.eval_size},
                                     num_symbols=d.num_symbols, min_len=d.min_len,
                                     max_len=d.max_len)['validation']
  logits = jax.jit(experiment.model.apply)({'params': checkpoint.load_params(tmp_path)},
                                           split['source'],
                                           sequence_tasks.decoder_inputs(split['target']))
  weights = split['target'] != sequence_tasks.PAD
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, split['target'])
  np.testing.assert_allclose(results['eval']['loss'], np.sum(nll * weights) / weights.sum(),
                             rtol=1e-5)
  correct = np.asarray(np.argmax(logits, -1) == split['target'])
  np.testing.assert_allclose(results['eval']['token_accuracy'], correct[weights].mean(), rtol=1e-5)


def test_transformer_presets_use_the_papers_optimiser_and_decoding(tmp_path):
  for task in sequence_tasks.TASKS:
    config = transformer_configs.get_config(task)
    assert config.data.task == task
    assert (config.optim.name, config.optim.b1, config.optim.b2, config.optim.eps) == (
        'adam', 0.9, 0.98, 1e-9)
    assert (config.decode.beam_size, config.decode.alpha, config.loss.label_smoothing) == (
        4, 0.6, 0.1)
    # Eq. 3: lrate = d_model^-0.5 min(step^-0.5, step warmup^-1.5), steps counted from 1.
    schedule = optim.learning_rate_schedule(config.optim, config.train.steps)
    d, warmup = zoo.build_from_config(config.model).config.d_model, config.optim.warmup_steps
    for step in (1, warmup // 2, warmup, 5 * warmup):
      np.testing.assert_allclose(schedule(step - 1),
                                 d ** -0.5 * min(step ** -0.5, step * warmup ** -1.5), rtol=1e-6)
  config = transformer_configs.get_config('tiny')
  config.model.num_heads = 3  # an override of the preset's d_model 16 that cannot work
  with pytest.raises(ConfigError, match='cannot build the initial state.*divisible'):
    loop.train_and_evaluate(transformer.Transduction(config, devices.make_mesh()), str(tmp_path))


def test_char_lm_tiny_run_reports_bits_per_character_and_baselines(tmp_path):
  config = char_configs.get_config('tiny')
  experiment, results = _run(char_lm.CharLM, config, tmp_path)
  assert results['train_step_compilations'] == 1
  _train_loss_fell(tmp_path)
  ev = results['eval']
  # Recompute on the host: the first 40 held-out windows of 17 bytes, 16 predicted each.
  held_out = text_corpus.load('validation')
  windows = np.stack([held_out[i * 16:i * 16 + 17] for i in range(40)]).astype(np.int32)
  logits = jax.jit(experiment.model.apply)({'params': checkpoint.load_params(tmp_path)},
                                           windows[:, :-1])
  bits = optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]) / math.log(2)
  np.testing.assert_allclose(ev['bits_per_byte'], np.mean(bits), rtol=1e-5)
  chars = text_corpus.num_characters(windows[:, 1:])
  np.testing.assert_allclose(ev['bits_per_char'], np.sum(bits) / chars, rtol=1e-5)
  unigram, bigram = text_corpus.ngram_log_probs(text_corpus.load('train'))
  np.testing.assert_allclose(ev['unigram_bits_per_char'],
                             -unigram[windows[:, 1:]].sum() / math.log(2) / chars, rtol=1e-6)
  np.testing.assert_allclose(ev['bigram_bits_per_byte'],
                             -bigram[windows[:, :-1], windows[:, 1:]].mean() / math.log(2),
                             rtol=1e-6)  # constants, but summed on the device in float32
  assert ev['bigram_bits_per_byte'] < ev['unigram_bits_per_byte'] < 8.0


def test_bert_examples_are_sentence_pairs_with_next_sentence_labels():
  data = np.frombuffer(b'abcdefghijklmnopqrstuvwxyz' * 4, np.uint8)
  pairs = bert_mlm.SentencePairs(data, segment=5, stride=3, seed=0)
  assert len(pairs) == (len(data) - 10) // 3 + 1
  labels = []
  for i in range(len(pairs)):
    ex = pairs[i]
    tokens = ex['tokens']
    assert tokens[0] == bert_mlm.CLS and tokens[6] == tokens[12] == bert_mlm.SEP
    np.testing.assert_array_equal(tokens[1:6] - bert_mlm.BYTE_OFFSET, data[3 * i:3 * i + 5])
    np.testing.assert_array_equal(ex['segments'], [0] * 7 + [1] * 6)
    if ex['nsp_label'] == 0:  # IsNext: B continues A.
      np.testing.assert_array_equal(tokens[7:12] - bert_mlm.BYTE_OFFSET, data[3 * i + 5:3 * i + 10])
    labels.append(int(ex['nsp_label']))
    np.testing.assert_array_equal(pairs[i]['tokens'], tokens)  # A pure function of the index.
  assert 0 < sum(labels) < len(labels)


def test_bert_mlm_tiny_run_reports_mlm_accuracy_and_the_unigram_baseline(tmp_path):
  config = bert_configs.get_config('tiny')
  _, results = _run(bert_mlm.BertMLM, config, tmp_path)
  assert results['train_step_compilations'] == 1
  _train_loss_fell(tmp_path)
  ev = results['eval']
  assert set(ev) == {'mlm_accuracy', 'mlm_loss', 'unigram_accuracy', 'nsp_accuracy'}
  assert all(0.0 <= ev[k] <= 1.0 for k in ('mlm_accuracy', 'unigram_accuracy', 'nsp_accuracy'))
  # 12 maskable bytes per example: 2 chosen (15%, rounded), so accuracies are multiples of 1/80.
  assert abs(ev['unigram_accuracy'] * 80 - round(ev['unigram_accuracy'] * 80)) < 1e-4
  assert ev['unigram_accuracy'] > 0.0  # Spaces are chosen among the 80 positions.
