"""An offline image-text dataset for CLIP: rendered coloured shapes with templated captions.

Built by the project for "Learning Transferable Visual Models From Natural Language Supervision"
(Radford et al. 2021, arXiv:2103.00020), whose 400M web image-text pairs are out of reach offline.
The data keeps what the paper's zero-shot transfer needs: images paired with free-form sentences
that mention their content in varied phrasings (some name every attribute, some only a few), and
classes that can be named in text. It departs from web data in being synthetic, small and clean.

Each 32x32 RGB image shows one shape (circle, square, triangle, diamond, cross) in one of six
colours, small or large, on the left, in the middle or on the right, rotated by up to 10 degrees,
anti-aliased (4x4 supersampling), over a random dark grey background with pixel noise; colours are
jittered per image. Its caption is one of `CAPTION_TEMPLATES` filled with its attributes, e.g.
"a photo of a small red square." or "there is a blue cross on the left.".

Compositional hold-out: the colour-shape pairs in `HELD_OUT` (one colour per shape, five of the
thirty pairs) never appear in `train` or `validation`; `test` holds only them. Every shape and every
colour is still seen in training, with other partners, so zero-shot classification of `test`
images among all thirty "colour shape" classes measures generalisation to unseen combinations.

Splits (`ShapesCaptions`, 'shapes_captions'): train 30,000 and validation 2,000 (seen pairs), test
2,000 (held-out pairs). `ShapesCaptionsTiny` ('shapes_captions_tiny') is the same generator with
256 / 128 / 128 examples, for tests. Every split is a pure function of its seed.

`WordTokenizer` is the documented simpler tokenizer this set needs (CLIP uses a 49,152-merge BPE):
a word-level vocabulary over the caption and prompt templates, with CLIP's conventions: padding 0,
start-of-text and end-of-text the two highest ids (end-of-text highest, so the text tower's
`argmax` finds it), fixed context length, and truncation that keeps end-of-text last.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds

SHAPES = ('circle', 'square', 'triangle', 'diamond', 'cross')
COLOURS = {'red': (220, 40, 40), 'green': (50, 180, 60), 'blue': (50, 90, 230),
           'yellow': (230, 220, 50), 'purple': (150, 60, 200), 'orange': (245, 140, 30)}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ('small', 'large')
POSITIONS = ('left', 'middle', 'right')
# One colour per shape, each a different colour: every shape and colour still appears in training.
HELD_OUT = (('circle', 'red'), ('square', 'green'), ('triangle', 'blue'), ('diamond', 'yellow'),
            ('cross', 'purple'))
WHERE = {'left': 'on the left', 'middle': 'in the middle', 'right': 'on the right'}
CAPTION_TEMPLATES = (
    'a photo of a {size} {colour} {shape}.',
    'a {colour} {shape}.',
    'a {size} {colour} {shape} {where}.',
    'a picture of a {colour} {shape} {where}.',
    'a {shape} in {colour}.',
    'a drawing of a {size} {shape} that is {colour}.',
    'there is a {colour} {shape} {where}.',
)
# Zero-shot prompts for a "{colour} {shape}" label; the first is the single-template baseline.
PROMPT_TEMPLATES = ('a photo of a {label}.', 'a picture of a {label}.', 'a drawing of a {label}.',
                    'a {label}.', 'there is a {label}.')

IMAGE_SIZE = 32
_SUPERSAMPLE = 4
_RADIUS = {'small': (3.5, 4.5), 'large': (6.5, 8.0)}
# Squares and diamonds (squares turned by 45 degrees) stay at least 25 degrees apart.
_MAX_ROTATION = np.deg2rad(10.0)
_COLOUR_JITTER = 20


def combination(shape: int, colour: int) -> int:
  """The index of a colour-shape pair among all len(SHAPES) * len(COLOURS) of them."""
  return shape * len(COLOURS) + colour


def combination_names() -> list[str]:
  """The label text of every pair, "colour shape", in `combination` order."""
  return [f'{colour} {shape}' for shape in SHAPES for colour in COLOURS]


def held_out_combinations() -> list[int]:
  return [combination(SHAPES.index(s), COLOUR_NAMES.index(c)) for s, c in HELD_OUT]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
  """Inside-test of a shape of size r centred at 0, in its rotated coordinates (v points down)."""
  if shape == 'circle':
    return u * u + v * v <= r * r
  if shape == 'square':
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85 * r
  if shape == 'diamond':
    return np.abs(u) + np.abs(v) <= 1.2 * r
  if shape == 'triangle':
    # Equilateral, apex up, inradius rho, shifted so that its bounding box is centred.
    rho = 0.65 * r
    v = v - rho / 2
    return (v <= rho) & (0.866 * u - 0.5 * v <= rho) & (-0.866 * u - 0.5 * v <= rho)
  if shape == 'cross':
    arm = 0.38 * r
    u, v = np.abs(u), np.abs(v)
    return ((u <= arm) & (v <= 1.1 * r)) | ((v <= arm) & (u <= 1.1 * r))
  raise ValueError(f'unknown shape {shape!r}; known: {", ".join(SHAPES)}')


def render(shape: str, colour: str, size: str, position: str,
           rng: np.random.Generator) -> np.ndarray:
  """One uint8 image [32, 32, 3]; placement, rotation, colour jitter and noise drawn from `rng`."""
  r = rng.uniform(*_RADIUS[size])
  margin = 1.35 * r + 0.5  # Every shape, rotated, fits within 1.35 r of its centre.
  x_range = {'left': (margin, 12.0), 'middle': (14.0, 18.0),
             'right': (20.0, IMAGE_SIZE - margin)}[position]
  cx, cy = rng.uniform(*x_range), rng.uniform(margin, IMAGE_SIZE - margin)
  angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
  offsets = (np.arange(IMAGE_SIZE * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
  dx, dy = offsets[None, :] - cx, offsets[:, None] - cy
  u = np.cos(angle) * dx + np.sin(angle) * dy
  v = -np.sin(angle) * dx + np.cos(angle) * dy
  coverage = _shape_mask(shape, u, v, r).reshape(
      IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE).mean(axis=(1, 3))[..., None]
  rgb = np.clip(np.array(COLOURS[colour]) + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, 3),
                0, 255)
  background = rng.uniform(0, 70)
  image = background * (1 - coverage) + rgb * coverage
  image = image + rng.normal(0.0, 6.0, image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def caption(template: str, shape: str, colour: str, size: str, position: str) -> str:
  return template.format(shape=shape, colour=colour, size=size, where=WHERE[position])


def generate(num_examples: int, seed: int, held_out: bool) -> Iterable[dict]:
  """Examples over the held-out pairs (`held_out=True`) or over all the others."""
  rng = np.random.default_rng(seed)
  pairs = [(s, c) for s in SHAPES for c in COLOURS if ((s, c) in HELD_OUT) == held_out]
  for _ in range(num_examples):
    shape, colour = pairs[rng.integers(len(pairs))]
    size, position = SIZES[rng.integers(len(SIZES))], POSITIONS[rng.integers(len(POSITIONS))]
    template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    yield {'image': render(shape, colour, size, position, rng),
           'caption': caption(template, shape, colour, size, position),
           'shape': SHAPES.index(shape), 'colour': COLOUR_NAMES.index(colour),
           'size': SIZES.index(size), 'position': POSITIONS.index(position)}


class ShapesCaptions(tfds.core.GeneratorBasedBuilder):
  """Captioned shapes (`shapes_captions`): train, validation on seen pairs; test held out."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SPLITS = {'train': (30_000, 0, False), 'validation': (2_000, 1, False), 'test': (2_000, 2, True)}

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not dataset_info_from_configs, which looks for a metadata directory).
    return tfds.core.DatasetInfo(
        builder=self,
        description=('Rendered coloured shapes with templated captions; the colour-shape pairs '
                     f'{HELD_OUT} appear only in the test split.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
            'caption': tfds.features.Text(),
            'shape': tfds.features.ClassLabel(names=SHAPES),
            'colour': tfds.features.ClassLabel(names=COLOUR_NAMES),
            'size': tfds.features.ClassLabel(names=SIZES),
            'position': tfds.features.ClassLabel(names=POSITIONS),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {name: self._generate_examples(*spec) for name, spec in self.SPLITS.items()}

  def _generate_examples(self, num_examples: int, seed: int, held_out: bool):
    for i, example in enumerate(generate(num_examples, seed, held_out)):
      yield i, example


class ShapesCaptionsTiny(ShapesCaptions):
  """The same generator, a few hundred examples (`shapes_captions_tiny`), for tests."""

  SPLITS = {'train': (256, 0, False), 'validation': (128, 1, False), 'test': (128, 2, True)}


# Registered in `pipeline.OFFLINE_BUILDERS`: built on first use, no network needed.
BUILDERS = {'shapes_captions': ShapesCaptions, 'shapes_captions_tiny': ShapesCaptionsTiny}


def vocabulary() -> list[str]:
  """Every word and punctuation mark of the caption and prompt templates and attributes, sorted."""
  texts = [*CAPTION_TEMPLATES, *PROMPT_TEMPLATES, *SHAPES, *COLOURS, *SIZES, *WHERE.values()]
  words = {w for text in texts for w in _split(re.sub(r'\{\w+\}', ' ', text))}
  return sorted(words)


def _split(text: str) -> list[str]:
  return re.findall(r"[a-z]+|[^\sa-z]", text.lower())


class WordTokenizer:
  """Words -> ids: 0 padding, 1..n the words, n + 1 start-of-text, n + 2 end-of-text (the highest).

  `tokenizer(texts, context_length)` returns int32 [len(texts), context_length]:
  [SOT, words..., EOT, 0, ...]. A text too long for the context raises, or with `truncate=True`
  is cut and its last token replaced by EOT (as CLIP's `tokenize`). Unknown words raise.
  """

  def __init__(self, words: Sequence[str]):
    self._ids = {word: i for i, word in enumerate(words, start=1)}
    self.sot = len(words) + 1
    self.eot = len(words) + 2
    self.vocab_size = len(words) + 3

  def encode(self, text: str) -> list[int]:
    try:
      return [self.sot, *(self._ids[w] for w in _split(text)), self.eot]
    except KeyError as e:
      raise ValueError(f'{e.args[0]!r} (in {text!r}) is not in the vocabulary') from None

  def __call__(self, texts: Sequence[str], context_length: int,
               truncate: bool = False) -> np.ndarray:
    tokens = np.zeros((len(texts), context_length), np.int32)
    for i, text in enumerate(texts):
      ids = self.encode(text)
      if len(ids) > context_length:
        if not truncate:
          raise ValueError(f'{text!r} has {len(ids)} tokens; the context length is '
                           f'{context_length}')
        ids = ids[:context_length - 1] + [self.eot]
      tokens[i, :len(ids)] = ids
    return tokens


def tokenizer() -> WordTokenizer:
  """The tokenizer of this dataset's captions and prompts."""
  return WordTokenizer(vocabulary())


def all_captions(shape: int, colour: int, size: int, position: int) -> list[str]:
  """Every caption template filled with an example's attributes (class indices): its references."""
  return [caption(t, SHAPES[shape], COLOUR_NAMES[colour], SIZES[size], POSITIONS[position])
          for t in CAPTION_TEMPLATES]


def decode(tokenizer: WordTokenizer, ids) -> str:
  """Token ids -> text: the words up to end-of-text, joined by spaces ('.' attached)."""
  words = {i: w for w, i in tokenizer._ids.items()}
  out = []
  for i in ids:
    i = int(i)
    if i == tokenizer.eot:
      break
    if i in words:
      out.append(words[i])
  return ' '.join(out).replace(' .', '.').replace(' ,', ',')
