"""Show and Tell (Vinyals et al. 2014): beam search finds the best caption; the model's shapes."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.captioning import show_and_tell as sat
from jaxpapers.data import shapes_captions

PAD, START, END, V = 0, 1, 2, 5


def markov_step(table):
  """A toy decoder: log p(next | previous) from a fixed [V, V] table; the carry is unused."""
  log_table = jnp.log(jnp.asarray(table, jnp.float32))
  return lambda carry, tokens: (carry, log_table[tokens])


def brute_force_best(table, max_len):
  """The best sequence by total log-probability among all that beam search can emit."""
  best, best_score = None, -np.inf
  words = [w for w in range(V) if w != PAD]
  for length in range(1, max_len + 1):
    for seq in itertools.product(words, repeat=length):
      if END in seq[:-1] or (length < max_len and seq[-1] != END):
        continue
      prev, score = START, 0.0
      for w in seq:
        score += np.log(table[prev][w])
        prev = w
      if score > best_score:
        best, best_score = list(seq) + [PAD] * (max_len - length), score
  return best, best_score


def test_beam_search_beats_greedy_where_the_best_caption_starts_unlikely():
  table = np.full((V, V), 1e-3)
  table[START, 3], table[START, 4] = 0.6, 0.4  # Greedy takes 3 ...
  table[3, :] = 0.25  # ... after which every word is a coin flip,
  table[4, END] = 0.99  # while 4 is almost surely followed by the end: log 0.4 + log 0.99 wins.
  step = markov_step(table / table.sum(1, keepdims=True))
  normalised = table / table.sum(1, keepdims=True)
  tokens, scores = jax.jit(lambda: sat.beam_search(step, jnp.zeros((1, 1)), 1, start=START,
                                                   end=END, beam_size=2, max_len=3))()
  best, best_score = brute_force_best(normalised, 3)
  np.testing.assert_array_equal(tokens[0, 0], best)
  np.testing.assert_allclose(scores[0, 0], best_score, rtol=1e-5)
  assert best[:2] == [4, END]
  greedy, _ = sat.beam_search(step, jnp.zeros((1, 1)), 1, start=START, end=END, beam_size=1,
                              max_len=3)
  assert int(greedy[0, 0, 0]) == 3  # Beam size 1 is greedy and misses it.


def test_wide_beam_matches_exhaustive_search_on_random_models():
  rng = np.random.default_rng(0)
  for _ in range(3):
    table = rng.dirichlet(np.full(V, 0.5), size=V) + 1e-6
    table /= table.sum(1, keepdims=True)
    tokens, scores = sat.beam_search(markov_step(table), jnp.zeros((2, 1)), 2, start=START,
                                     end=END, beam_size=(V - 1) ** 3, max_len=3)
    best, best_score = brute_force_best(table, 3)
    for b in range(2):
      np.testing.assert_array_equal(tokens[b, 0], best)
      np.testing.assert_allclose(scores[b, 0], best_score, rtol=1e-4)
    finite = np.asarray(scores[0])[np.isfinite(scores[0])]  # The beam outnumbers the sequences.
    assert len(finite) > 10 and np.all(np.diff(finite) <= 1e-6)  # Best first.


def test_model_teacher_forcing_agrees_with_stepwise_decoding():
  model = sat.ShowAndTell(vocab_size=V, embed_dim=8, hidden_size=8, dropout_rate=0.0)
  images = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  tokens = np.array([[START, 3, 4, END, PAD], [START, 4, 4, 3, END]], np.int32)
  variables = jax.jit(model.init)(jax.random.key(0), images, tokens)
  logits = jax.jit(model.apply)(variables, images, tokens)
  chex.assert_shape(logits, (2, 4, V))
  carry = model.apply(variables, images, method=sat.ShowAndTell.start)
  for t in range(4):
    carry, log_probs = model.apply(variables, carry, tokens[:, t], method=sat.ShowAndTell.step)
    chex.assert_trees_all_close(log_probs, jax.nn.log_softmax(logits[:, t]), atol=1e-5)
  words = jax.jit(lambda v, x: sat.caption(model, v, x, start=START, end=END, max_len=6))(
      variables, images)
  chex.assert_shape(words, (2, 6))


def test_image_input_varies_across_images_at_the_word_scale():
  """The image is the decoder's only view of the picture (Eq. 10): at initialisation its input
  x_{-1} must differ between images at least as much as one word's embedding differs from
  another's, or training settles into the caption language prior (the first version's failure:
  a spread of 0.03 against the words' 0.09, and one caption for every image)."""
  rng = np.random.default_rng(0)
  images = np.stack([shapes_captions.render(shape, colour, size, 'middle', rng)
                     for shape in shapes_captions.SHAPES for colour in ('red', 'blue')
                     for size in shapes_captions.SIZES]).astype(np.float32) / 255.0
  model = sat.ShowAndTell(vocab_size=31)
  tokens = np.zeros((len(images), 14), np.int32)
  variables = model.init(jax.random.key(0), images, tokens)
  x_image, updates = model.apply(variables, images, True, method=image_input,
                                 mutable=['batch_stats'], rngs={'dropout': jax.random.key(1)})
  spread = float(jnp.mean(jnp.std(x_image, axis=0)))
  words = float(jnp.mean(jnp.std(variables['params']['word_embed']['embedding'], axis=0)))
  assert spread > words, (spread, words)
  # Training updates the running statistics that inference uses (they start at 0 and 1).
  assert float(jnp.abs(updates['batch_stats']['encoder']['norm']['mean']).max()) > 0.0


def image_input(model, images, train):
  return model._image(images, train)
