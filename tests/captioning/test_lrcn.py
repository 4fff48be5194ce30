"""LRCN (Donahue et al. 2014) and the moving-shapes clips it is trained on."""

import chex
import jax
import numpy as np

from experiments import classify
from experiments.configs import lrcn as configs
from jaxpapers.captioning import lrcn, show_and_tell
from jaxpapers.data import moving_shapes
from jaxpapers.train import devices, loop


def test_clips_move_the_shape_in_the_labelled_direction():
  rng = np.random.default_rng(0)
  for _ in range(8):
    clip, label = moving_shapes.render_clip(rng)
    chex.assert_shape(clip, (8, 32, 32, 3))
    # The shape is the bright part; its centre of mass moves along the label's axis.
    weight = (clip.astype(np.float32).max(-1) > 100).astype(np.float32)
    ys, xs = np.mgrid[:32, :32]
    centre = np.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], -1) / weight.sum(
        (1, 2))[:, None]
    moved = centre[-1] - centre[0]
    want = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}[label]
    assert np.dot(moved, want) > 7.0, (label, moved)


def test_single_frame_model_ignores_frame_order_and_lrcn_does_not():
  clips = np.random.default_rng(1).uniform(size=(2, 5, 16, 16, 3)).astype(np.float32)
  reversed_clips = clips[:, ::-1]
  for single, order_matters in ((True, False), (False, True)):
    model = lrcn.LRCN(hidden_size=8, single_frame=single)
    params = jax.jit(model.init)(jax.random.key(0), clips)
    out, rev = (np.asarray(jax.jit(model.apply)(params, c)) for c in (clips, reversed_clips))
    chex.assert_shape(out, (2, 4))
    assert (np.abs(out - rev).max() > 1e-5) == order_matters


def test_frame_features_see_where_the_shape_is():
  # A blob moved by the encoder's total stride (8): averaging the last map over space gives the
  # same features for both frames, so no direction of motion could be read from them.
  frames = np.zeros((2, 32, 32, 3), np.float32)
  frames[0, 8:12, 8:12] = frames[1, 16:20, 8:12] = 1.0
  for flatten, same in ((False, True), (True, False)):
    encoder = show_and_tell.ConvEncoder(flatten=flatten)
    out = encoder.apply(encoder.init(jax.random.key(0), frames), frames)
    assert np.allclose(out[0], out[1], atol=1e-6) == same
  # LRCN's fully connected layer reads the whole 4x4x128 map.
  variables = lrcn.LRCN(hidden_size=8).init(jax.random.key(0), frames[None])
  chex.assert_shape(variables['params']['fc']['kernel'], (4 * 4 * 128, 256))


def test_tiny_lrcn_run_through_classify(tmp_path):
  results = loop.train_and_evaluate(classify.Classify(configs.get_config('tiny'),
                                                      devices.make_mesh()), str(tmp_path))
  assert results['status'] == 'finished' and 0.0 <= results['eval']['accuracy'] <= 1.0
