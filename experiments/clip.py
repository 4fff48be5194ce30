"""CLIP: contrastive image-text pre-training, then zero-shot transfer and linear probes.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford et al. 2021,
arXiv:2103.00020).

    python -m experiments.clip --config=experiments/configs/clip.py:shapes_vit --workdir=runs/clip

Trains `jaxpapers.contrastive.clip.CLIP` from scratch on the offline captioned-shapes set
(`jaxpapers.data.shapes_captions`) with the symmetric contrastive loss of Figure 3 over each global
batch (`config.loss_impl`: `shard_map`, the explicit all-gather per device, or `jit`, the sharded
global matrix), AdamW (beta2 0.98, eps 1e-6, decoupled weight decay off gains and biases) and a
cosine schedule with warm-up (section 2.5). The learned log-scale is clipped at log 100 after every
update (as open_clip clamps it), besides the clip inside the loss, so it can come down at once.

Each evaluation reports, on the validation split (seen colour-shape pairs), the loss and in-batch
retrieval accuracy (`eval_step`), and on the host (`after_eval`):
  * zero-shot classification (section 3.1): every one of the 30 "colour shape" labels is put into
    the prompt templates of `shapes_captions.PROMPT_TEMPLATES`; the classifier is the prompt
    ensemble (normalised text embeddings averaged, then normalised, section 3.1.4) or the single
    template "a photo of a {label}." (suffix `_1t`). On the test split, whose pairs were held out of
    training, it gives the pair accuracy among all 30 labels (`zs_unseen_pair`, chance 1/30), among
    the 5 held-out pairs only (`zs_unseen_pair_among_unseen`, chance 1/5), and the shape and colour
    of the predicted pair (`zs_unseen_shape`, chance 1/5; `zs_unseen_colour`, chance 1/6);
    `zs_seen_pair*` are the same on the validation split.
  * linear probes (section 3.2): L2-regularised multinomial logistic regression (full-batch
    L-BFGS in JAX, `fit_logistic_regression`, with scikit-learn's objective; C chosen from 4 values
    on a fifth of the probe-train set, as the paper sweeps C on a validation split) on
    frozen image embeddings of `data.probe_train_size` train images, predicting shape and colour,
    scored on validation (`probe_seen_*`) and on test (`probe_unseen_*`); the same for the
    randomly initialised towers of this run (`random_probe_*`). Probing the embeddings (after the
    projection) follows the linear-probe example of openai's README; appendix A.3 of the paper
    probes the features before it.
  * a plot, `<workdir>/clip_training.png`, of the training loss and the learned temperature
    (1 / logit scale) read back from the run's metric history.

Departures from the paper's recipe (scale, tokenizer, no image augmentation: the renders already
vary in position, size, rotation and colour) are listed in `experiments/configs/clip.py`.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from jaxpapers.contrastive import clip
from jaxpapers.data import pipeline, shapes_captions
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, devices, metrics, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

LOSS_IMPLS = ('shard_map', 'jit')
IMAGE_TOWERS = ('vit', 'resnet')
# CLIP's preprocessing constants (openai/CLIP clip.py `_transform`).
_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
_PROBE_CS = (0.01, 0.1, 1.0, 10.0)
_PROBE_TARGETS = ('shape', 'colour')


def normalize_images(images: jax.Array) -> jax.Array:
  """uint8 [..., 3] -> float32 standardised with CLIP's channel statistics."""
  return (images.astype(jnp.float32) / 255.0 - _MEAN) / _STD


def build_model(config, vocab_size: int) -> clip.CLIP:
  m = config.model
  if m.image_tower not in IMAGE_TOWERS:
    raise ConfigError(f'config.model.image_tower={m.image_tower!r}; '
                      f'valid: {", ".join(IMAGE_TOWERS)}')
  return clip.CLIP(
      embed_dim=m.embed_dim,
      vision_layers=m.vision_layers if m.image_tower == 'vit' else tuple(m.resnet_stages),
      vision_width=m.vision_width, vision_patch_size=m.vision_patch_size,
      vision_heads=m.vision_heads, vocab_size=vocab_size, context_length=m.context_length,
      text_width=m.text_width, text_layers=m.text_layers, text_heads=m.text_heads)


class CLIPExperiment(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    if d.name not in shapes_captions.BUILDERS:
      raise ConfigError(f'config.data.name={d.name!r}: the word tokenizer covers the captioned '
                        f'shapes only; valid: {", ".join(shapes_captions.BUILDERS)}')
    if config.loss_impl not in LOSS_IMPLS:
      raise ConfigError(f'config.loss_impl={config.loss_impl!r}; valid: {", ".join(LOSS_IMPLS)}')
    self.tokenizer = shapes_captions.tokenizer()
    self.model = build_model(config, self.tokenizer.vocab_size)
    self._splits = {split: self._load(split) for split in ('train', 'validation', 'test')}
    self._image_shape = self._splits['train']['image'].shape[1:]
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self._loss = (clip.sharded_clip_loss(mesh) if config.loss_impl == 'shard_map'
                  else clip.clip_loss)
    self._random_features = None  # Probe features of the untrained towers, computed once.

  def _load(self, split: str) -> dict[str, np.ndarray]:
    """A whole split in memory: uint8 images, caption tokens, shape and colour labels."""
    d = self.config.data
    source = pipeline.load_source(d.name, split, d.data_dir or None)
    rows = pipeline.in_memory(source)
    captions = [row['caption'].decode() for row in rows]
    return {'image': np.stack([row['image'] for row in rows]),
            'tokens': self.tokenizer(captions, self.config.model.context_length),
            'shape': np.array([row['shape'] for row in rows], np.int32),
            'colour': np.array([row['colour'] for row in rows], np.int32)}

  def _variables(self, state: TrainState) -> dict:
    return {'params': state.params, **state.model_state}

  def init(self, rng):
    variables = self.model.init(rng, jnp.zeros((1, *self._image_shape)),
                                jnp.zeros((1, self.config.model.context_length), jnp.int32))
    params = variables.pop('params')
    return TrainState.create(params=params, tx=self.tx, rng=rng, model_state=dict(variables))

  def train_step(self, state: TrainState, batch):
    images = normalize_images(batch['image'])

    def loss_fn(params):
      (image, text, log_scale), model_state = self.model.apply(
          {'params': params, **state.model_state}, images, batch['tokens'], train=True,
          mutable=list(state.model_state))
      return self._loss(image, text, log_scale), (image, text, log_scale, model_state)

    (loss, (image, text, log_scale, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads, model_state=dict(model_state))
    params = {**state.params, 'logit_scale': jnp.minimum(state.params['logit_scale'],
                                                         math.log(clip.MAX_LOGIT_SCALE))}
    scale = clip.logit_scale(log_scale)
    similarity = clip.l2_normalize(image) @ clip.l2_normalize(text).T
    accuracy = jnp.mean(jnp.argmax(similarity, axis=1) == jnp.arange(similarity.shape[0]))
    return state.replace(params=params), {'loss': loss, 'logit_scale': scale,
                                          'temperature': 1.0 / scale, 'accuracy': accuracy}

  def eval_step(self, state: TrainState, batch):
    """The batch's contrastive loss and retrieval accuracy, padding masked out of both."""
    image, text, log_scale = self.model.apply(self._variables(state),
                                              normalize_images(batch['image']), batch['tokens'])
    logits = clip.logit_scale(log_scale) * clip.l2_normalize(image) @ clip.l2_normalize(text).T
    valid = batch['mask'] > 0
    diagonal = jnp.diagonal(logits)
    to_text = jnp.where(valid[None, :], logits, -jnp.inf)  # Rows: images; padded texts excluded.
    to_image = jnp.where(valid[:, None], logits, -jnp.inf).T
    per_example = (jax.nn.logsumexp(to_text, axis=1)
                   + jax.nn.logsumexp(to_image, axis=1)) / 2 - diagonal
    index = jnp.arange(logits.shape[0])
    return {'loss': jnp.sum(jnp.where(valid, per_example, 0.0)),
            'i2t_accuracy': jnp.sum(valid & (jnp.argmax(to_text, axis=1) == index)),
            't2i_accuracy': jnp.sum(valid & (jnp.argmax(to_image, axis=1) == index)),
            'count': jnp.sum(batch['mask'])}

  def train_data(self):
    train = self._splits['train']
    rows = pipeline.ArrayRows({'image': train['image'], 'tokens': train['tokens']})
    return pipeline.train_batches(rows, global_batch_size=self.config.train.batch_size,
                                  seed=self.config.seed)

  def eval_data(self):
    validation = self._splits['validation']
    rows = pipeline.ArrayRows({'image': validation['image'], 'tokens': validation['tokens']})
    return pipeline.eval_batches(rows, global_batch_size=self.config.train.batch_size)

  # Host-side evaluation.

  @functools.cached_property
  def _encoders(self):
    replicated = devices.replicated(self.mesh)

    @functools.partial(jax.jit, out_shardings=replicated)
    def encode_images(variables, images):
      return self.model.apply(variables, normalize_images(images), method='encode_image')

    @functools.partial(jax.jit, out_shardings=replicated)
    def encode_texts(variables, tokens):
      return self.model.apply(variables, tokens, method='encode_text')

    return encode_images, encode_texts

  def _image_features(self, variables, images: np.ndarray) -> np.ndarray:
    """Embeddings of `images` in padded batches of the train batch size, sharded over 'data'."""
    encode, _ = self._encoders
    size = self.config.train.batch_size
    sharding = devices.data_sharded(self.mesh)
    features = []
    for start in range(0, len(images), size):
      chunk = images[start:start + size]
      padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), axis=0)])
      batch = jax.make_array_from_callback(padded.shape, sharding, lambda index: padded[index])
      features.append(np.asarray(jax.device_get(encode(variables, batch)))[:len(chunk)])
    return np.concatenate(features)

  def _zero_shot_classifiers(self, variables) -> dict[str, np.ndarray]:
    """The prompt-ensemble and single-template class vectors, [30, embed_dim] each."""
    _, encode = self._encoders
    labels = shapes_captions.combination_names()
    prompts = [t.format(label=label) for t in shapes_captions.PROMPT_TEMPLATES for label in labels]
    tokens = self.tokenizer(prompts, self.config.model.context_length)
    features = np.asarray(jax.device_get(encode(variables, tokens)))
    features = features.reshape(len(shapes_captions.PROMPT_TEMPLATES), len(labels), -1)
    return {'': np.asarray(clip.zero_shot_classifier(features)),
            '_1t': np.asarray(clip.zero_shot_classifier(features[:1]))}

  def _probe_sets(self, variables) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(embeddings, labels) of the probe-train images and of the validation and test splits."""
    n = self.config.data.probe_train_size
    sets = {'train': {k: v[:n] for k, v in self._splits['train'].items()},
            'seen': self._splits['validation'], 'unseen': self._splits['test']}
    return {name: (self._image_features(variables, split['image']),
                   {t: split[t] for t in _PROBE_TARGETS}) for name, split in sets.items()}

  def after_eval(self, state: TrainState, step: int, workdir: str) -> dict[str, float]:
    variables = self._variables(state)
    probe_sets = self._probe_sets(variables)
    results = {}
    pairs = {name: shapes_captions.combination(probe_sets[name][1]['shape'],
                                               probe_sets[name][1]['colour'])
             for name in ('seen', 'unseen')}
    held_out = np.array(shapes_captions.held_out_combinations())
    for suffix, classifier in self._zero_shot_classifiers(variables).items():
      for name in ('seen', 'unseen'):
        logits = np.asarray(clip.zero_shot_logits(probe_sets[name][0], classifier))
        predicted = logits.argmax(axis=1)
        results[f'zs_{name}_pair{suffix}'] = float(np.mean(predicted == pairs[name]))
        if name == 'unseen' and not suffix:
          shape, colour = np.divmod(predicted, len(shapes_captions.COLOURS))
          results['zs_unseen_shape'] = float(np.mean(shape == probe_sets[name][1]['shape']))
          results['zs_unseen_colour'] = float(np.mean(colour == probe_sets[name][1]['colour']))
          among = held_out[logits[:, held_out].argmax(axis=1)]
          results['zs_unseen_pair_among_unseen'] = float(np.mean(among == pairs[name]))
    results.update(_linear_probes(probe_sets, prefix='probe'))
    if self._random_features is None:
      random_state = jax.jit(self.init, out_shardings=devices.replicated(self.mesh))(
          jax.random.PRNGKey(self.config.seed))
      self._random_features = self._probe_sets(self._variables(random_state))
    results.update(_linear_probes(self._random_features, prefix='random_probe'))
    if jax.process_index() == 0:
      plot_training(workdir, os.path.join(workdir, 'clip_training.png'))
    return results


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def fit_logistic_regression(x: jax.Array, labels: jax.Array, weights: jax.Array, l2: jax.Array, *,
                            num_classes: int, steps: int = 300) -> tuple[jax.Array, jax.Array]:
  """Multinomial logistic regression by full-batch L-BFGS, one fit per entry of `l2` (vmapped).

  Minimises mean_i w_i CE(x_i W + b, y_i) / mean_i w_i + l2 / 2 ||W||^2 (the bias is not
  regularised): scikit-learn's `LogisticRegression(C)` objective with l2 = 1 / (C sum_i w_i).
  Rows with weight 0 are left out of the fit, so one compiled program serves every subset.
  Returns (W [len(l2), d, k], b [len(l2), k]).
  """

  def fit(l2):
    def objective(params):
      kernel, bias = params
      loss = optax.softmax_cross_entropy_with_integer_labels(x @ kernel + bias, labels)
      return jnp.sum(loss * weights) / jnp.sum(weights) + 0.5 * l2 * jnp.sum(kernel ** 2)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
      params, state = carry
      value, grad = value_and_grad(params, state=state)
      updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                     value_fn=objective)
      return (optax.apply_updates(params, updates), state), None

    params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros(num_classes))
    (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), length=steps)
    return params

  return jax.vmap(fit)(l2)


def _linear_probes(probe_sets, prefix: str) -> dict[str, float]:
  """A logistic-regression probe per target on the 'train' embeddings; accuracy on 'seen' and
  'unseen'. C is the value of `_PROBE_CS` best on every fifth probe-train row (fitted on the rest);
  the probe is then refitted on all rows with it. Features are standardised with train statistics.
  """
  train_x, train_labels = probe_sets['train']
  mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
  x = (train_x - mean) / std
  held = np.arange(len(x)) % 5 == 0
  cs = np.array(_PROBE_CS, np.float32)
  results = {}
  for target in _PROBE_TARGETS:
    y = train_labels[target]
    num_classes = len(shapes_captions.SHAPES if target == 'shape' else shapes_captions.COLOURS)
    fit_weights = (~held).astype(np.float32)
    kernels, biases = fit_logistic_regression(x, y, fit_weights, 1.0 / (cs * fit_weights.sum()),
                                              num_classes=num_classes)
    scores = [np.mean(np.argmax(x[held] @ k + b, axis=1) == y[held]) for k, b in zip(
        np.asarray(kernels), np.asarray(biases))]
    best = cs[int(np.argmax(scores))]
    all_rows = np.ones(len(x), np.float32)
    kernels, biases = fit_logistic_regression(
        x, y, all_rows, np.full_like(cs, 1.0 / (best * len(x))), num_classes=num_classes)
    kernel, bias = np.asarray(kernels[0]), np.asarray(biases[0])
    for name in ('seen', 'unseen'):
      features, labels = probe_sets[name]
      predicted = np.argmax((features - mean) / std @ kernel + bias, axis=1)
      results[f'{prefix}_{name}_{target}'] = float(np.mean(predicted == labels[target]))
  return results


def plot_training(workdir: str, path: str) -> str:
  """The training loss and the learned temperature over steps, from `<workdir>/metrics.jsonl`."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  history = metrics.read_history(workdir, 'train/')
  figure, (loss_axis, temperature_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
  loss_axis.plot(*history['loss'])
  loss_axis.set(xlabel='step', ylabel='contrastive loss', title='training loss (per log window)')
  temperature_axis.plot(*history['temperature'], label='learned temperature')
  temperature_axis.axhline(0.07, color='grey', linestyle=':', label='initial 0.07')
  temperature_axis.axhline(1 / clip.MAX_LOGIT_SCALE, color='red', linestyle='--',
                           label='clip (logit scale 100)')
  temperature_axis.set(xlabel='step', ylabel='temperature = 1 / logit scale', yscale='log',
                       title='learned temperature')
  temperature_axis.legend()
  figure.tight_layout()
  with epath.Path(path).open('wb') as f:
    figure.savefig(f, format='png', dpi=100)
  plt.close(figure)
  return path


if __name__ == '__main__':
  cli.run(CLIPExperiment)
