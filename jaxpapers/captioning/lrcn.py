"""LRCN: per-frame CNN features into an LSTM, for activity recognition in video.

"Long-term Recurrent Convolutional Networks for Visual Recognition and Description", Donahue,
Hendricks, Guadarrama, Rohrbach, Venugopalan, Saenko, Darrell, 2014, arXiv:1411.4389, sections 3
and 4 (activity recognition): each frame x_t goes through a CNN, phi(x_t); an LSTM reads the
sequence of features; each step's output gives a softmax over activities, and the clip's
prediction averages the steps' predictions. The paper's baseline is the same CNN trained on single
frames, its predictions averaged over the clip (`single_frame=True` here).

Departures: the paper's CNN is CaffeNet pre-trained on ImageNet (its fc6 features into an LSTM of
256 units); here a small convnet (`show_and_tell.ConvEncoder`'s three conv-pool stages, batch
normalised) is trained jointly from scratch on the project's 32x32 moving-shapes clips
(`jaxpapers.data.moving_shapes`), with an LSTM of 128. As CaffeNet's fc6, a fully connected layer
(256, ReLU) reads the whole last feature map: a first version averaged the map over space, as Show
and Tell's encoder does, which discards where the shape is and so the direction it moves in (both
models stayed near chance; WORKSPACE.md). The paper averages per-frame probabilities; the model
returns the average of per-frame log-probabilities (their geometric mean, as logits), so
`experiments/classify.py` trains it unchanged with one cross-entropy per clip rather than one per
frame.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.captioning.show_and_tell import ConvEncoder
from jaxpapers.recurrent.lstm import LSTMCell

PAPER = ('Long-term Recurrent Convolutional Networks for Visual Recognition and Description '
         '(Donahue et al. 2014, arXiv:1411.4389)')


class LRCN(nn.Module):
  """clips [B, T, H, W, C] -> logits [B, classes]: mean over t of log softmax of step t's output."""
  num_classes: int = 4
  hidden_size: int = 128
  single_frame: bool = False
  fc_size: int = 256  # fc6's role (CaffeNet: 4,096)

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    b, t = clips.shape[:2]
    frames = clips.reshape((b * t,) + clips.shape[2:])
    features = ConvEncoder(flatten=True, name='encoder')(frames, train)
    features = nn.relu(nn.Dense(self.fc_size, name='fc')(features)).reshape(b, t, -1)
    if not self.single_frame:
      features = nn.RNN(LSTMCell(self.hidden_size, name='cell'), name='rnn')(features)
    per_frame = jax.nn.log_softmax(nn.Dense(self.num_classes, name='logits')(features))
    return jnp.mean(per_frame, axis=1)


for _name, _single in (('lrcn_moving_shapes', False), ('single_frame_moving_shapes', True)):
  zoo.register(_name, lambda single=_single: LRCN(single_frame=single),
               inputs=lambda: (jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32),),
               apply_kwargs={'train': False}, paper=PAPER, reference_params=None,
               reference_source='project preset for moving_shapes (8 frames of 32x32)')
