"""The evaluator interface: built from config.evals, errors in one line, sample quality end to end."""

import jax
import numpy as np
import pytest

from experiments import classify
from experiments.configs import classify as classify_configs
from jaxpapers import evaluators
from jaxpapers.errors import ConfigError
from jaxpapers.evaluators import base
from jaxpapers.train import devices, loop, metrics


@pytest.mark.parametrize('evals, message', [
    ({'q': {'type': 'fid'}}, "config.evals.q.type='fid'; valid: sample_grid"),
    ({'g': {'type': 'sample_grid', 'fn': 'sample', 'rows': 3}},
     "evaluator 'sample_grid' has no option 'rows'; its options: fn, num_images"),
    ({'g': {'type': 'sample_grid', 'fn': 'draw'}},
     "uses fn='draw', which the experiment does not provide; it provides: sample"),
])
def test_bad_evaluator_configs_are_one_clear_error(evals, message):
  with pytest.raises(ConfigError, match=message):
    evaluators.build(evals, {'sample': lambda state, key, num: None}, devices.make_mesh())


def test_map_batches_keeps_row_order_and_pads_to_one_shape():
  calls = []

  def fn(state, batch):
    calls.append(batch.shape)
    return batch * state

  rows = np.arange(21, dtype=np.float32)[:, None]
  out = base.map_batches(fn, 2.0, rows, batch_size=5, mesh=devices.make_mesh())
  np.testing.assert_array_equal(out, rows * 2.0)
  assert set(calls) == {(8, 1)}  # rounded up to the 8 devices; the last batch padded
  tree = base.map_batches(lambda state, batch: {'x': batch * state, 'big': batch[:, 0] > 10}, 2.0,
                          rows, batch_size=5, mesh=devices.make_mesh())  # a pytree of outputs
  np.testing.assert_array_equal(tree['x'], rows * 2.0)
  np.testing.assert_array_equal(tree['big'], rows[:, 0] > 10)


@pytest.fixture(scope='module')
def classifier_workdir(tmp_path_factory, digits_dir):
  """A tiny digits classifier (classify:tiny, an MLP), trained through the experiment."""
  workdir = str(tmp_path_factory.mktemp('classifier'))
  config = classify_configs.get_config('tiny')
  config.data.data_dir = digits_dir
  config.train.steps = 60
  loop.train_and_evaluate(classify.Classify(config, devices.make_mesh()), workdir)
  return workdir


def test_sample_quality_tells_real_digits_from_noise(classifier_workdir, digits_dir, tmp_path):
  real = base.load_split('sklearn_digits', 'test', digits_dir, ('image',))['image'] / 255.0

  def draw(images):
    return lambda state, key, num: images[np.random.default_rng(int(key[-1])).integers(0, len(images), num)]

  noise = np.random.default_rng(0).uniform(size=real.shape)
  config = {'type': 'sample_quality', 'fn': 'sample', 'classifier_workdir': classifier_workdir,
            'classifier_model': 'digits_mlp', 'data_dir': digits_dir, 'num_samples': 300,
            'batch_size': 100}
  writer = metrics.MetricWriter(str(tmp_path))
  scores = {name: evaluators.build({'q': config}, {'sample': draw(images)},
                                   devices.make_mesh())['q'](None, 0, writer)
            for name, images in (('real', real), ('noise', noise))}
  assert scores['real']['frechet_distance'] < 0.1 * scores['noise']['frechet_distance']
  assert scores['real']['classes_found'] == 10 and scores['noise']['classes_found'] < 10
  # The 60-step MLP is not confident (real digits score ~1.9 of 10), yet well above noise (~1.1).
  assert scores['real']['classifier_score'] > 1.5 * scores['noise']['classifier_score']


def test_sample_quality_without_a_trained_classifier_says_what_to_do(tmp_path):
  config = {'type': 'sample_quality', 'fn': 'sample', 'classifier_workdir': str(tmp_path)}
  with pytest.raises(Exception, match='no checkpoint in .*train the run first'):
    evaluators.build({'q': config}, {'sample': None}, devices.make_mesh())


def test_classification_evaluator_matches_the_experiments_eval(classifier_workdir, digits_dir,
                                                               tmp_path):
  config = classify_configs.get_config('tiny')
  config.data.data_dir = digits_dir
  experiment = classify.Classify(config, devices.make_mesh())
  config.train.steps = 60
  results = loop.train_and_evaluate(experiment, classifier_workdir)  # finished: evaluates again
  state = _restored_state(experiment, classifier_workdir)
  evaluator = evaluators.build({'test': {'type': 'classification', 'fn': 'logits',
                                         'dataset': 'sklearn_digits', 'data_dir': digits_dir}},
                               experiment.evaluation_fns(), experiment.mesh)['test']
  scores = evaluator(state, 60, metrics.MetricWriter(str(tmp_path)))
  np.testing.assert_allclose(scores['accuracy'], results['eval']['accuracy'], rtol=1e-6)
  np.testing.assert_allclose(scores['loss'], results['eval']['loss'], rtol=1e-4)


def _restored_state(experiment, workdir):
  from jaxpapers.train import checkpoint
  replicated = devices.replicated(experiment.mesh)
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                          jax.eval_shape(experiment.init, jax.random.PRNGKey(0)))
  checkpointer = checkpoint.Checkpointer(workdir)
  state, _ = checkpointer.restore(abstract)
  checkpointer.close()
  return state
