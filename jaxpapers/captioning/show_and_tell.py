"""Show and Tell: a CNN image encoder and an LSTM caption decoder, with beam-search inference.

"Show and Tell: A Neural Image Caption Generator", Vinyals, Toshev, Bengio, Erhan, 2014,
arXiv:1411.4555 (CVPR 2015), section 3.1, Eqs. (10)-(13), and section 3.1.2 (inference); its
journal version "Show and Tell: Lessons learned from the 2015 MSCOCO Image Captioning Challenge"
(arXiv:1609.06647, TPAMI 2016) for the beam size.

    x_{-1} = W_I CNN(I)            the image is fed once, before the words (Eq. 10)
    x_t = W_e S_t, t = 0..N-1      S_0 the start word (Eq. 11)
    p_{t+1} = softmax(W_o LSTM(x_t))   (Eq. 12)
    loss = -sum_t log p_t(S_t)     (Eq. 13), S_N the end word

Inference (section 3.1.2) is beam search: keep the k best partial sentences by total
log-probability; extend each by every word; keep the k best of those. Finished sentences (those
that have emitted the end word) stay in the beam with their score. The conference paper uses k =
20; the journal version finds k = 3 best on COCO, the default here. No length normalisation: the
paper ranks by the sum of log-probabilities.

The encoder's pooled features are batch-normalised (Ioffe & Szegedy 2015), as the paper's
encoder, GoogLeNet with batch normalisation, ends: the image input x_{-1} then varies across images
at unit scale. Without it (the first version here) global average pooling of a small shape on a
noisy background gave features almost equal for every image (their spread across images a third
of the word embeddings' scale, on top of a common offset five times that), and the decoder
settled into the caption language prior, writing one caption for every image; the test
`test_image_input_varies_across_images_at_the_word_scale` pins this. Batch statistics in
training, running averages (momentum `bn_momentum`) at inference.

Departures: the paper's encoder is ImageNet-pretrained (then frozen, and fine-tuned in the journal
version); the project's captioned shapes are 32x32, so the encoder is a small convnet trained
jointly from scratch (the paper notes pre-training matters most against overfitting on small
sets; 30,000 clean pairs are enough here). Word embeddings and the LSTM are 128/256 wide (the
paper's are 512). Dropout as the paper's, on the image embedding and the LSTM output.

`beam_search` is generic: any `step(carry, tokens [N]) -> (carry, log_probs [N, V])`.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.nn.batch_norm import BatchNorm
from jaxpapers.recurrent.lstm import LSTMCell

PAPER = ('Show and Tell: A Neural Image Caption Generator (Vinyals, Toshev, Bengio, Erhan 2014, '
         'arXiv:1411.4555)')


class ConvEncoder(nn.Module):
  """Three 3x3 conv-ReLU-pool stages, global average pooling and batch norm: images -> [B, F].

  `flatten=True` flattens the last map instead of averaging it, so the features keep where things
  are (LRCN's motion needs it; pooling is invariant to shifts by the encoder's stride of 8).
  """
  widths: tuple[int, ...] = (32, 64, 128)
  bn_momentum: float = 0.9
  flatten: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    x = images
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (3, 3), name=f'conv{i}')(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    return BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     name='norm')(x.reshape(len(x), -1) if self.flatten
                                  else jnp.mean(x, axis=(1, 2)))


class ShowAndTell(nn.Module):
  """`model(images, tokens)` -> logits [B, L - 1, V] for tokens[:, 1:] (teacher forcing).

  tokens are [S_0 = start, S_1, ..., end, 0 padding...]. `start(images)` gives the carry after the
  image (Eq. 10) and `step(carry, tokens)` one word's (carry, log-probabilities), for search.
  Variables: 'params' and the encoder's 'batch_stats' (updated with `train=True`,
  `mutable=['batch_stats']`).
  """
  vocab_size: int
  embed_dim: int = 128
  hidden_size: int = 256
  dropout_rate: float = 0.3
  bn_momentum: float = 0.9

  def setup(self):
    self.encoder = ConvEncoder(bn_momentum=self.bn_momentum)
    self.image_embed = nn.Dense(self.embed_dim)  # W_I
    self.word_embed = nn.Embed(self.vocab_size, self.embed_dim)  # W_e
    self.cell = LSTMCell(self.hidden_size)
    self.rnn = nn.RNN(self.cell, return_carry=True)
    self.out = nn.Dense(self.vocab_size)  # W_o
    self.dropout = nn.Dropout(self.dropout_rate)

  def _image(self, images, train):
    return self.dropout(self.image_embed(self.encoder(images, train)), deterministic=not train)

  def __call__(self, images: jax.Array, tokens: jax.Array, train: bool = False) -> jax.Array:
    inputs = jnp.concatenate([self._image(images, train)[:, None],
                              self.word_embed(tokens[:, :-1])], axis=1)
    _, outputs = self.rnn(inputs)
    return self.out(self.dropout(outputs[:, 1:], deterministic=not train))

  def start(self, images: jax.Array) -> Any:
    x = self._image(images, False)
    carry = self.cell.initialize_carry(jax.random.key(0), x.shape)
    return self.cell(carry, x)[0]

  def step(self, carry: Any, tokens: jax.Array) -> tuple[Any, jax.Array]:
    carry, h = self.cell(carry, self.word_embed(tokens))
    return carry, jax.nn.log_softmax(self.out(h))


def beam_search(step: Callable[[Any, jax.Array], tuple[Any, jax.Array]], carry: Any,
                batch_size: int, *, start: int, end: int, beam_size: int, max_len: int,
                pad: int = 0) -> tuple[jax.Array, jax.Array]:
  """The `beam_size` best sequences of at most `max_len` words after `start`, by total log-prob.

  `carry` is the decoder state for each of `batch_size` inputs (leading axis B); `step` maps
  (carry [N, ...], tokens [N]) to (carry, log_probs [N, V]). A sequence ends at `end` (included),
  after which it is padded with `pad` at no cost; `pad` is never chosen by an unfinished sequence.
  Returns tokens [B, beam, max_len] and scores [B, beam], best first.
  """
  k = beam_size
  carry = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), carry)  # [B * k, ...]
  scores = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1)), (batch_size, 1))
  tokens = jnp.full((batch_size, k, max_len), pad, jnp.int32)
  finished = jnp.zeros((batch_size, k), bool)
  last = jnp.full((batch_size * k,), start, jnp.int32)

  def body(state, t):
    carry, scores, tokens, finished, last = state
    carry, log_probs = step(carry, last)
    vocab = log_probs.shape[-1]
    log_probs = log_probs.reshape(batch_size, k, vocab)
    pad_only = jnp.full((vocab,), -jnp.inf).at[pad].set(0.0)
    no_pad = jnp.zeros((vocab,)).at[pad].set(-jnp.inf)
    log_probs = jnp.where(finished[..., None], pad_only, log_probs + no_pad)
    candidates = (scores[..., None] + log_probs).reshape(batch_size, k * vocab)
    scores, index = jax.lax.top_k(candidates, k)
    beam, word = index // vocab, (index % vocab).astype(jnp.int32)
    pick = lambda x: jnp.take_along_axis(x, beam.reshape(beam.shape + (1,) * (x.ndim - 2)), 1)
    carry = jax.tree.map(
        lambda x: pick(x.reshape((batch_size, k) + x.shape[1:])).reshape(x.shape), carry)
    tokens = pick(tokens).at[:, :, t].set(word)
    finished = pick(finished) | (word == end)
    return (carry, scores, tokens, finished, word.reshape(-1)), None

  state = (carry, scores, tokens, finished, last)
  (_, scores, tokens, _, _), _ = jax.lax.scan(body, state, jnp.arange(max_len))
  return tokens, scores


def caption(model: ShowAndTell, variables: Any, images: jax.Array, *, start: int, end: int,
            beam_size: int = 3, max_len: int = 16) -> jax.Array:
  """The best beam's words [B, max_len] (end word included, then padding); `variables` holds
  'params' and 'batch_stats'."""
  carry = model.apply(variables, images, method=ShowAndTell.start)
  step = lambda c, t: model.apply(variables, c, t, method=ShowAndTell.step)
  tokens, _ = beam_search(step, carry, images.shape[0], start=start, end=end,
                          beam_size=beam_size, max_len=max_len)
  return tokens[:, 0]


zoo.register('show_and_tell_shapes', lambda: ShowAndTell(vocab_size=31),
             inputs=lambda: (jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32),
                             jax.ShapeDtypeStruct((1, 14), jnp.int32)),
             paper=PAPER, reference_params=None,
             reference_source='project preset for shapes_captions (32x32, word vocabulary)')
