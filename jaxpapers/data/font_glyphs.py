"""An offline few-shot set in the shape of Omniglot: glyphs of many scripts, rendered from the fonts
matplotlib ships, with random distortions.

Built by the project for the metric-learning papers (Koch et al. 2015, Snell et al. 2017), whose
Omniglot ("Human-level concept learning through probabilistic program induction", Lake,
Salakhutdinov, Tenenbaum 2015: 1,623 handwritten characters of 50 alphabets, 20 drawings each,
30 "background" alphabets for training and 20 "evaluation" alphabets for testing) is not available
offline. What the few-shot protocol needs is kept: many classes, few examples per class (20), and
evaluation classes from alphabets never seen in training.

* Alphabets are Unicode blocks (`ALPHABETS`: scripts such as Greek, Armenian, Georgian, Tifinagh,
  Canadian syllabics, and symbol sets such as arrows, mathematical operators, box drawing). Each
  keeps at most 40 characters (a fixed random choice); blocks the fonts cover with fewer than 10
  distinct glyphs are dropped. With matplotlib 3.11's fonts that leaves 46 alphabets and 1,626
  characters (Omniglot: 50 and 1,623): 26 background alphabets (899 characters, 17,980 images)
  and the 20 of `EVALUATION` (727 characters, 14,540 images), mixing scripts and symbol sets as
  Omniglot's evaluation alphabets mix scripts. Building it takes about 3-5 minutes on 2 cores.
* A character is a class. Its "drawers" (Omniglot's 20 people) are the fonts that cover it, among
  the DejaVu Sans, Sans Mono and Serif families and STIX General, each in regular, bold, oblique and
  bold oblique (16 fonts, `FONTS`), and the distortions: each example picks a font at random, then
  a random affine map (Koch et al.'s ranges: rotation within 10 degrees, shear within 0.3, scale
  0.8-1.2 per axis, shift within 2 pixels), a random stroke width (grey dilation or erosion of the
  4x-supersampled glyph), random contrast and Gaussian pixel noise.
* Each glyph is cropped to its ink and scaled so its longer side is 20 of the 28 pixels (centred),
  as Omniglot's characters fill their frames; so "o" and "O" would be the same class. Characters
  whose canonical rendering (DejaVu Sans or the first covering font, no distortion) correlates
  above `DUPLICATE_CORRELATION` with a character already kept, in this or an earlier alphabet, are
  dropped, as are near-empty glyphs: no two classes (and no class across the split) look alike.

Images are 28x28x1 uint8, strokes bright on black (Omniglot is black on white; the usual 28x28
downsampling of it is what Vinyals et al. 2016 and Snell et al. 2017 train on). Features: `image`,
`label` (the character's class: background classes come first, so `train` and `test` labels are
disjoint ranges), `alphabet`, `character` (the Unicode code point) and `font`.

Splits (TFDS omniglot's names): `train` the background alphabets, `test` the evaluation
alphabets. `FontGlyphs` ('font_glyphs'): 20 examples per character. `FontGlyphsTiny`
('font_glyphs_tiny'): 4 + 2 alphabets of 8 characters, 10 examples each, for tests. Every image is
a pure function of the seed and its position; the character set depends on the fonts of the
pinned matplotlib version (`setup.cfg`).
"""

from __future__ import annotations

import functools
import os
import unicodedata
from typing import Iterable

import numpy as np
import tensorflow_datasets as tfds

IMAGE_SIZE = 28
GLYPH_SIZE = 20  # pixels of the longer side of a glyph's ink, before distortion
_SUPERSAMPLE = 4
_RENDER_PX = 96  # the font size the glyphs are rasterised at, before cropping and scaling
MAX_PER_ALPHABET = 40
MIN_PER_ALPHABET = 10
DUPLICATE_CORRELATION = 0.9

FONTS = ('DejaVuSans.ttf', 'DejaVuSans-Bold.ttf', 'DejaVuSans-Oblique.ttf',
         'DejaVuSans-BoldOblique.ttf', 'DejaVuSansMono.ttf', 'DejaVuSansMono-Bold.ttf',
         'DejaVuSansMono-Oblique.ttf', 'DejaVuSansMono-BoldOblique.ttf', 'DejaVuSerif.ttf',
         'DejaVuSerif-Bold.ttf', 'DejaVuSerif-Italic.ttf', 'DejaVuSerif-BoldItalic.ttf',
         'STIXGeneral.ttf', 'STIXGeneralBol.ttf', 'STIXGeneralItalic.ttf', 'STIXGeneralBolIta.ttf')

# Unicode blocks (name, first, last code point), in the order characters are deduplicated.
ALPHABETS = (
    ('latin', 0x0041, 0x007A), ('latin_extended_a', 0x0100, 0x017F),
    ('latin_extended_b', 0x0180, 0x024F), ('ipa', 0x0250, 0x02AF), ('greek', 0x0370, 0x03FF),
    ('cyrillic', 0x0400, 0x04FF), ('cyrillic_supplement', 0x0500, 0x052F),
    ('armenian', 0x0530, 0x058F), ('hebrew', 0x0590, 0x05FF), ('arabic', 0x0600, 0x06FF),
    ('nko', 0x07C0, 0x07FF), ('lao', 0x0E80, 0x0EFF), ('georgian', 0x10A0, 0x10FF),
    ('canadian_syllabics', 0x1400, 0x167F), ('ogham', 0x1680, 0x169F),
    ('phonetic_extensions', 0x1D00, 0x1D7F), ('letterlike', 0x2100, 0x214F),
    ('number_forms', 0x2150, 0x218F), ('arrows', 0x2190, 0x21FF),
    ('math_operators', 0x2200, 0x22FF), ('misc_technical', 0x2300, 0x23FF),
    ('control_pictures', 0x2400, 0x243F), ('ocr', 0x2440, 0x245F),
    ('enclosed_alphanumerics', 0x2460, 0x24FF), ('box_drawing', 0x2500, 0x257F),
    ('block_elements', 0x2580, 0x259F), ('geometric_shapes', 0x25A0, 0x25FF),
    ('misc_symbols', 0x2600, 0x26FF), ('dingbats', 0x2700, 0x27BF),
    ('misc_math_a', 0x27C0, 0x27EF), ('supplemental_arrows_a', 0x27F0, 0x27FF),
    ('braille', 0x2800, 0x28FF), ('supplemental_arrows_b', 0x2900, 0x297F),
    ('misc_math_b', 0x2980, 0x29FF), ('supplemental_math_operators', 0x2A00, 0x2AFF),
    ('misc_symbols_arrows', 0x2B00, 0x2BFF), ('glagolitic', 0x2C00, 0x2C5F),
    ('latin_extended_c', 0x2C60, 0x2C7F), ('coptic', 0x2C80, 0x2CFF),
    ('georgian_supplement', 0x2D00, 0x2D2F), ('tifinagh', 0x2D30, 0x2D7F),
    ('supplemental_punctuation', 0x2E00, 0x2E7F), ('yijing', 0x4DC0, 0x4DFF),
    ('modifier_tone_letters', 0xA700, 0xA71F), ('latin_extended_d', 0xA720, 0xA7FF),
    ('vai', 0xA500, 0xA63F), ('cyrillic_extended_b', 0xA640, 0xA69F),
    ('alphabetic_presentation', 0xFB00, 0xFB4F), ('arabic_presentation_b', 0xFE70, 0xFEFF),
    ('currency', 0x20A0, 0x20CF), ('superscripts_subscripts', 0x2070, 0x209F),
    ('mahjong_domino', 0x1F000, 0x1F0FF), ('tai_xuan_jing', 0x1D300, 0x1D35F),
    ('math_alphanumeric', 0x1D400, 0x1D7FF),
)
# Held out, as Omniglot's 20 evaluation alphabets: scripts and symbol sets both.
EVALUATION = ('armenian', 'georgian', 'georgian_supplement', 'tifinagh', 'nko', 'ogham', 'lao',
              'hebrew', 'cyrillic_supplement', 'latin_extended_d', 'canadian_syllabics',
              'misc_technical', 'geometric_shapes', 'supplemental_arrows_b', 'misc_math_a',
              'misc_math_b', 'dingbats', 'tai_xuan_jing', 'box_drawing', 'letterlike')
# Unicode categories that are glyphs of their own: letters, numbers, symbols, some punctuation.
_CATEGORIES = ('Lu', 'Ll', 'Lt', 'Lo', 'Lm', 'Nd', 'Nl', 'No', 'Sm', 'Sc', 'Sk', 'So', 'Po')


def _font_dir() -> str:
  import matplotlib  # Imported here: only needed when building.
  return os.path.join(matplotlib.get_data_path(), 'fonts', 'ttf')


@functools.lru_cache(maxsize=None)
def _font(name: str):
  from matplotlib import ft2font
  return ft2font.FT2Font(os.path.join(_font_dir(), name))


def covering_fonts(code_point: int) -> tuple[int, ...]:
  """Indices in `FONTS` of the fonts that have a glyph for `code_point`."""
  return tuple(i for i, name in enumerate(FONTS) if _font(name).get_char_index(code_point))


def rasterise(code_point: int, font: int) -> np.ndarray:
  """The glyph's ink as float32 in [0, 1], cropped to its bounding box ([h, w]; empty if none)."""
  face = _font(FONTS[font])
  face.set_size(_RENDER_PX, 72)
  face.set_text(chr(code_point))
  face.draw_glyphs_to_bitmap(antialiased=True)
  image = np.asarray(face.get_image(), np.float32) / 255.0
  rows, cols = np.flatnonzero(image.max(1) > 0.05), np.flatnonzero(image.max(0) > 0.05)
  if not len(rows) or not len(cols):
    return np.zeros((0, 0), np.float32)
  return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _place(ink: np.ndarray, size: int, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
  """The ink scaled to GLYPH_SIZE (longer side) and mapped by (matrix, offset) about the centre of a
  size x size canvas (`scipy.ndimage.affine_transform` pulls each output pixel from the input)."""
  from scipy import ndimage
  scale = GLYPH_SIZE * size / IMAGE_SIZE / max(ink.shape)  # canvas pixels per ink pixel
  # output coordinate o -> ink coordinate: centre_ink + A^-1 (o - centre_out - offset) / scale
  inverse = np.linalg.inv(matrix) / scale
  centre_in = (np.array(ink.shape) - 1) / 2.0
  centre_out = (np.array([size, size]) - 1) / 2.0
  start = centre_in - inverse @ (centre_out + offset)
  return ndimage.affine_transform(ink, inverse, offset=start, output_shape=(size, size), order=1,
                                  cval=0.0)


def canonical(code_point: int, font: int) -> np.ndarray:
  """The undistorted 28x28 float image of a character, the reference used for deduplication."""
  ink = rasterise(code_point, font)
  if not ink.size:
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
  return _place(ink, IMAGE_SIZE, np.eye(2), np.zeros(2))


def distorted(code_point: int, font: int, rng: np.random.Generator) -> np.ndarray:
  """One uint8 example [28, 28, 1]: affine map, stroke width, contrast and noise drawn from `rng`."""
  from scipy import ndimage
  ink = rasterise(code_point, font)
  size = IMAGE_SIZE * _SUPERSAMPLE
  theta = np.deg2rad(rng.uniform(-10, 10))
  shear = rng.uniform(-0.3, 0.3)
  scale = rng.uniform(0.8, 1.2, 2)
  rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  matrix = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
  offset = rng.uniform(-2, 2, 2) * _SUPERSAMPLE
  canvas = _place(ink, size, matrix, offset)
  stroke = rng.integers(-1, 3)  # thinner (-1), unchanged (0) or bolder (1, 2) by supersampled pixels
  if stroke > 0:
    canvas = ndimage.grey_dilation(canvas, size=(2 * stroke + 1,) * 2)
  elif stroke < 0:
    canvas = ndimage.grey_erosion(canvas, size=(3, 3))
  image = canvas.reshape(IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE).mean(axis=(1, 3))
  image = image * rng.uniform(0.7, 1.0) * 255 + rng.normal(0.0, 8.0, image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)[..., None]


def _alphabets() -> Iterable[tuple[str, tuple[tuple[int, tuple[int, ...]], ...]]]:
  """(alphabet, ((code point, covering fonts), ...)) in `ALPHABETS` order: the deduplicated
  characters, at most MAX_PER_ALPHABET per alphabet; alphabets left with fewer than
  MIN_PER_ALPHABET are skipped. An alphabet's characters depend only on the alphabets before it."""
  kept_images: list[np.ndarray] = []
  for name, first, last in ALPHABETS:
    candidates = []
    for cp in range(first, last + 1):
      if unicodedata.category(chr(cp)) not in _CATEGORIES:
        continue
      fonts = covering_fonts(cp)
      if fonts:
        candidates.append((cp, fonts))
    order = np.random.default_rng(first).permutation(len(candidates))
    chosen, images = [], []
    for i in order:
      cp, fonts = candidates[i]
      image = canonical(cp, fonts[0]).ravel()
      if image.sum() < 15.0:  # near-empty: a dot, a thin rule
        continue
      image = (image - image.mean()) / (image.std() + 1e-6)
      earlier = kept_images + images
      if earlier and np.max(np.stack(earlier) @ image) / image.size > DUPLICATE_CORRELATION:
        continue
      # Every font of a class must draw it (some map the code point to an empty glyph).
      fonts = tuple(f for f in fonts if f == fonts[0] or canonical(cp, f).sum() >= 15.0)
      images.append(image)
      chosen.append((cp, fonts))
      if len(chosen) == MAX_PER_ALPHABET:
        break
    if len(chosen) >= MIN_PER_ALPHABET:
      kept_images += images
      yield name, tuple(sorted(chosen))


@functools.lru_cache(maxsize=None)
def classes(max_alphabets: tuple[int, int] | None = None,
            max_characters: int | None = None) -> tuple[tuple[str, int, tuple[int, ...]], ...]:
  """Every class (alphabet, code point, fonts): the background alphabets' first, then the
  evaluation ones'; optionally only the first (background, evaluation) alphabets (only those and
  the alphabets before them are rendered) and the first `max_characters` of each."""
  chosen: tuple[list, list] = ([], [])
  for name, chars in _alphabets():
    part = chosen[int(name in EVALUATION)]
    if max_alphabets is None or len(part) < max_alphabets[int(name in EVALUATION)]:
      part.append([(name, cp, fonts) for cp, fonts in chars[:max_characters]])
    if max_alphabets is not None and all(len(p) >= m for p, m in zip(chosen, max_alphabets)):
      break
  return tuple(c for part in chosen for alphabet in part for c in alphabet)


def generate(class_list, labels: Iterable[int], examples_per_class: int,
             seed: int) -> Iterable[dict]:
  """`examples_per_class` distorted examples of each class of `class_list` with the given labels;
  example j of class `label` is a pure function of (seed, label, j)."""
  alphabets = [name for name, _, _ in ALPHABETS]
  for label in labels:
    alphabet, cp, fonts = class_list[label]
    for j in range(examples_per_class):
      rng = np.random.default_rng([seed, label, j])
      font = fonts[rng.integers(len(fonts))]
      yield {'image': distorted(cp, font, rng), 'label': label,
             'alphabet': alphabets.index(alphabet), 'character': cp, 'font': font}


class FontGlyphs(tfds.core.GeneratorBasedBuilder):
  """Distorted font glyphs (`font_glyphs`): background alphabets in `train`, evaluation in `test`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  EXAMPLES_PER_CLASS = 20
  MAX_ALPHABETS: tuple[int, int] | None = None  # (background, evaluation)
  MAX_CHARACTERS: int | None = None
  SEED = 0

  def _classes(self):
    return classes(self.MAX_ALPHABETS, self.MAX_CHARACTERS)

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not dataset_info_from_configs, which looks for a metadata directory).
    return tfds.core.DatasetInfo(
        builder=self,
        description=('Glyphs of 50 Unicode blocks rendered from the fonts matplotlib ships, with '
                     'random affine, stroke and noise distortions: an offline Omniglot.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(
                names=[f'{a}/U+{cp:04X}' for a, cp, _ in self._classes()]),
            'alphabet': tfds.features.ClassLabel(names=[name for name, _, _ in ALPHABETS]),
            'character': tfds.features.Scalar(dtype=np.int32),
            'font': tfds.features.ClassLabel(names=list(FONTS)),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    class_list = self._classes()
    evaluation = set(EVALUATION)
    background = [i for i, (a, _, _) in enumerate(class_list) if a not in evaluation]
    held_out = [i for i, (a, _, _) in enumerate(class_list) if a in evaluation]
    return {'train': self._generate_examples(class_list, background),
            'test': self._generate_examples(class_list, held_out)}

  def _generate_examples(self, class_list, labels):
    examples = generate(class_list, labels, self.EXAMPLES_PER_CLASS, self.SEED)
    for i, example in enumerate(examples):
      yield i, example


class FontGlyphsTiny(FontGlyphs):
  """The same generator on 4 background and 2 evaluation alphabets of 8 characters, 10 examples
  each (`font_glyphs_tiny`), for tests."""

  EXAMPLES_PER_CLASS = 10
  MAX_ALPHABETS = (4, 2)
  MAX_CHARACTERS = 8


# Registered in `pipeline.OFFLINE_BUILDERS`: built on first use, no network needed.
BUILDERS = {'font_glyphs': FontGlyphs, 'font_glyphs_tiny': FontGlyphsTiny}
