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
retrieval accuracy (`eval_step`); the config's evaluators (`jaxpapers/evaluators/`) add, through
this experiment's `image_features` and `text_features`:
  * `zs_*`, zero-shot classification (section 3.1, `zero_shot`): every one of the 30 "colour shape"
    labels in the prompt templates of `shapes_captions.PROMPT_TEMPLATES`, as a prompt ensemble (or
    the single template "a photo of a {label}.", suffix `_1t`). On the test split, whose pairs were
    held out of training (`zs_unseen_*`), the pair accuracy among all 30 labels (chance 1/30) and
    among the 5 held-out pairs only (`_among_unseen`, chance 1/5), and the shape and colour of the
    predicted pair (chance 1/5, 1/6); `zs_seen_*` the same on the validation split.
  * `probe_*`, linear probes (section 3.2, `linear_probe`) predicting shape and colour from frozen
    image embeddings of `probe_train_size` train images, scored on validation (`seen`) and test
    (`unseen`); `random_probe_*` the same for the randomly initialised towers of this run. Probing
    the embeddings (after the projection) follows the linear-probe example of openai's README;
    appendix A.3 of the paper probes the features before it.
  * `<workdir>/training_curves.png`, the training loss and the learned temperature (1 / logit
    scale) from the run's metric history.

Departures from the paper's recipe (scale, tokenizer, no image augmentation: the renders already
vary in position, size, rotation and colour) are listed in `experiments/configs/clip.py`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.contrastive import clip
from jaxpapers.data import pipeline, shapes_captions
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, devices, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

LOSS_IMPLS = ('shard_map', 'jit')
# CLIP's preprocessing constants (openai/CLIP clip.py `_transform`).
_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def normalize_images(images: jax.Array) -> jax.Array:
  """uint8 [..., 3] -> float32 standardised with CLIP's channel statistics."""
  return (images.astype(jnp.float32) / 255.0 - _MEAN) / _STD


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
    self.model = zoo.build_from_config(config.model, vocab_size=self.tokenizer.vocab_size)
    self.data = pipeline.Splits(train=self._load('train'), eval=self._load('validation'))
    self._image_shape = self.data.example()['image'].shape
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self._loss = (clip.sharded_clip_loss(mesh) if config.loss_impl == 'shard_map'
                  else clip.clip_loss)

  def _load(self, split: str) -> pipeline.ArrayRows:
    """A whole split in memory: uint8 images and caption tokens."""
    d = self.config.data
    rows = pipeline.in_memory(pipeline.load_source(d.name, split, d.data_dir or None))
    captions = [row['caption'].decode() for row in rows]
    return pipeline.ArrayRows({'image': np.stack([row['image'] for row in rows]),
                               'tokens': self.tokenizer(captions, self.model.context_length)})

  def _variables(self, state: TrainState) -> dict:
    return {'params': state.params, **state.model_state}

  def init(self, rng):
    variables = self.model.init(rng, jnp.zeros((1, *self._image_shape)),
                                jnp.zeros((1, self.model.context_length), jnp.int32))
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

  # What the evaluators use.

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

  @functools.cached_property
  def _initial_state(self):
    return jax.jit(self.init, out_shardings=devices.replicated(self.mesh))(
        jax.random.PRNGKey(self.config.seed))

  def evaluation_fns(self):
    encode_images, encode_texts = self._encoders

    def image_features(state, images):
      """uint8 images [N, 32, 32, 3] -> image embeddings [N, embed_dim]."""
      return encode_images(self._variables(state), images)

    def text_features(state, texts):
      """Strings -> text embeddings [N, embed_dim]."""
      return encode_texts(self._variables(state), self.tokenizer(texts, self.model.context_length))

    return {'image_features': image_features, 'text_features': text_features,
            # The untrained towers of this run, whatever the state: the probes' baseline.
            'image_features_at_init': lambda state, images: image_features(self._initial_state,
                                                                           images)}


if __name__ == '__main__':
  cli.run(CLIPExperiment)
