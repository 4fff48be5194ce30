"""The captioned-shapes set: splits and held-out pairs, captions and images agree, the tokenizer."""

import numpy as np
import pytest

from jaxpapers.data import pipeline, shapes_captions as sc


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  """Every split of shapes_captions_tiny, built offline through the pipeline, as lists of dicts."""
  directory = str(tmp_path_factory.mktemp('tfds'))
  return {split: pipeline.in_memory(pipeline.load_source('shapes_captions_tiny', split, directory))
          for split in ('train', 'validation', 'test')}


def pairs(examples):
  return {(sc.SHAPES[e['shape']], sc.COLOUR_NAMES[e['colour']]) for e in examples}


def test_held_out_pairs_appear_only_in_test(splits):
  assert [len(splits[s]) for s in ('train', 'validation', 'test')] == [256, 128, 128]
  held_out = set(sc.HELD_OUT)
  assert not pairs(splits['train']) & held_out and not pairs(splits['validation']) & held_out
  assert pairs(splits['test']) == held_out
  # Each shape and each colour is still seen in training, only not in the held-out pairs.
  assert {s for s, _ in pairs(splits['train'])} == set(sc.SHAPES)
  assert {c for _, c in pairs(splits['train'])} == set(sc.COLOURS)
  assert len({s for s, _ in sc.HELD_OUT}) == len({c for _, c in sc.HELD_OUT}) == 5
  assert sorted(sc.held_out_combinations()) == sorted(
      sc.combination_names().index(f'{c} {s}') for s, c in sc.HELD_OUT)


def test_captions_describe_their_images(splits):
  tokenizer = sc.tokenizer()
  for example in splits['train'] + splits['test']:
    caption = example['caption'].decode()
    words = caption.rstrip('.').split()
    shape, colour = sc.SHAPES[example['shape']], sc.COLOUR_NAMES[example['colour']]
    assert shape in words and colour in words, caption
    assert not set(words) & (set(sc.SHAPES) - {shape}), caption
    assert not set(words) & (set(sc.COLOURS) - {colour}), caption
    assert not set(words) & (set(sc.SIZES) - {sc.SIZES[example['size']]}), caption
    mentioned = [p for p, phrase in sc.WHERE.items() if phrase in caption]
    assert mentioned in ([], [sc.POSITIONS[example['position']]]), caption
    assert len(tokenizer.encode(caption)) <= 16


def _saturated(image):
  """The shape's pixels: the background is grey, every colour of the palette is not."""
  image = image.astype(int)
  return image.max(-1) - image.min(-1) > 60


def test_images_show_the_labelled_colour_size_and_position(splits):
  palette = np.array(list(sc.COLOURS.values()))
  for example in splits['train'] + splits['validation']:
    image = example['image']
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    mask = _saturated(image)
    mean_colour = image[mask].mean(axis=0)
    assert np.argmin(np.abs(palette - mean_colour).sum(-1)) == example['colour']
    # Small shapes cover at most ~70 pixels, large ones at least ~90.
    assert (mask.sum() > 80) == (sc.SIZES[example['size']] == 'large')
    x = np.nonzero(mask)[1].mean() + 0.5
    position = sc.POSITIONS[example['position']]
    assert {'left': x < 13, 'middle': 13 < x < 19, 'right': x > 19}[position], (position, x)


def test_generation_is_a_pure_function_of_the_seed():
  first, again, other = (list(sc.generate(4, seed, False)) for seed in (3, 3, 4))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
    assert a['caption'] == b['caption']
  assert any(not np.array_equal(a['image'], c['image']) for a, c in zip(first, other))


def test_tokenizer_follows_clip_conventions():
  tokenizer = sc.tokenizer()
  assert tokenizer.eot == tokenizer.vocab_size - 1 and tokenizer.sot == tokenizer.vocab_size - 2
  tokens = tokenizer(['a red circle.', 'a photo of a small blue cross.'], context_length=10)
  assert tokens.shape == (2, 10) and tokens.dtype == np.int32
  # [SOT, a, red, circle, ., EOT, 0, ...]: the full stop is a token.
  np.testing.assert_array_equal(tokens[0, [0, 5]], [tokenizer.sot, tokenizer.eot])
  np.testing.assert_array_equal(tokens[0, 6:], 0)  # padding
  # The text tower finds end-of-text as each row's largest id.
  np.testing.assert_array_equal(np.argmax(tokens, axis=1), [5, 9])
  # Words map to distinct ids below start-of-text; the same word, the same id.
  assert tokens[0, 1] == tokens[1, 1] == tokens[1, 4] and 0 < tokens[0, 2] < tokenizer.sot
  with pytest.raises(ValueError, match='context length is 6'):
    tokenizer(['a photo of a small blue cross.'], context_length=6)
  truncated = tokenizer(['a photo of a small blue cross.'], context_length=6, truncate=True)
  np.testing.assert_array_equal(truncated[0], [*tokens[1, :5], tokenizer.eot])
  with pytest.raises(ValueError, match="'dog'"):
    tokenizer(['a red dog.'], context_length=10)
  # Every zero-shot prompt of every label is in the vocabulary.
  prompts = [t.format(label=label) for t in sc.PROMPT_TEMPLATES for label in sc.combination_names()]
  assert tokenizer(prompts, context_length=16).shape == (150, 16)
