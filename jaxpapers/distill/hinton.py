"""Knowledge distillation with soft targets at a raised temperature.

"Distilling the Knowledge in a Neural Network" (Hinton, Vinyals, Dean 2015, arXiv:1503.02531).

What follows the paper:
  * Section 2, eq. (1): the class probabilities at temperature T are q_i = softmax(z / T)_i; the
    teacher's probabilities at the same T are the soft targets p.
  * The objective is a weighted average of two cross-entropies: with the soft targets at
    temperature T, and with the true labels at T = 1; "the magnitudes of the gradients produced by
    the soft targets scale as 1/T^2, it is important to multiply them by T^2 when using both hard
    and soft targets", so that their relative contribution stays about the same as T changes. Here
        loss = alpha * T^2 * H(p^T, q^T) + (1 - alpha) * H(y, q^1),
    averaged over the batch (`distillation_loss`); alpha near 1, as "considerably lower weight on
    the second objective function" worked best.
  * Section 2, eq. (2): dH(p^T, q^T)/dz_i = (q_i - p_i) / T; section 2.1, eq. (3)-(4): in the
    high-temperature limit with zero-mean logits, (q_i - p_i) / T ~ (z_i - v_i) / (N T^2), so
    T^2 times it tends to (z_i - v_i) / N, independent of T: distillation then matches logits.
    `tests/distill/test_hinton.py` checks both.
  * Section 3 (MNIST): the teacher is a net with two hidden layers of 1,200 ReLUs, regularised by
    dropout and trained on inputs jittered by up to two pixels (67 test errors); the same
    architecture with 800 units and no regularisation makes 146 errors; distilled with T = 20 from
    the teacher on the (un-jittered) transfer set it makes 74. `hinton_mnist_teacher` and
    `hinton_mnist_student` are those nets at 784 inputs; `digits_teacher` / `digits_student` are
    the project's 8x8-digits versions (`experiments/configs/distill.py`).

Departures: the paper uses H(p, q); `soft_target_loss` returns that cross-entropy (equal to
KL(p || q) plus the teacher's entropy, a constant of the student; the gradient is the same).
Dropout on the input is 0.2 and on hidden units 0.5 as Srivastava et al.'s MNIST nets; the
max-norm weight constraint of the paper's teacher is left out.
"""

from __future__ import annotations

import jax
import optax

from jaxpapers import zoo
from jaxpapers.nn.mlp import MLP


def soft_targets(logits: jax.Array, temperature: float | jax.Array) -> jax.Array:
  """Eq. (1): softmax(logits / T)."""
  return jax.nn.softmax(logits / temperature, axis=-1)


def soft_target_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                     temperature: float | jax.Array, scale_by_t2: bool = True) -> jax.Array:
  """T^2 * mean over the batch of H(p^T, q^T) = -sum_i p_i log q_i (without T^2 if not
  `scale_by_t2`); the teacher's side carries no gradient."""
  targets = jax.lax.stop_gradient(soft_targets(teacher_logits, temperature))
  loss = optax.softmax_cross_entropy(student_logits / temperature, targets).mean()
  return loss * temperature ** 2 if scale_by_t2 else loss


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array,
                      temperature: float, alpha: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """alpha * T^2 H(p^T, q^T) + (1 - alpha) H(y, q^1); returns (loss, {'soft': ..., 'hard': ...})."""
  soft = soft_target_loss(student_logits, teacher_logits, temperature)
  hard = optax.softmax_cross_entropy_with_integer_labels(student_logits, labels).mean()
  return alpha * soft + (1.0 - alpha) * hard, {'soft_loss': soft, 'hard_loss': hard}


def _mlp_count(sizes: tuple[int, ...]) -> int:
  return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


_PAPER = 'Distilling the Knowledge in a Neural Network (Hinton et al. 2015, arXiv:1503.02531)'
_NETS = {
    # Section 3: 784-1200-1200-10 with dropout; 784-800-800-10 without regularisation.
    'hinton_mnist_teacher': ((1200, 1200), 0.5, 0.2, (28, 28), 784),
    'hinton_mnist_student': ((800, 800), 0.0, 0.0, (28, 28), 784),
    # The 8x8 digits: the same teacher; a student small enough to fall short of it alone.
    'digits_teacher': ((1200, 1200), 0.5, 0.2, (8, 8), 64),
    'digits_student': ((32, 32), 0.0, 0.0, (8, 8), 64),
}
for _name, (_hidden, _dropout, _input_dropout, _shape, _inputs) in _NETS.items():
  zoo.register(_name, lambda h=_hidden, d=_dropout, i=_input_dropout: MLP(
      hidden_features=h, num_classes=10, dropout=d, input_dropout=i),
      inputs=zoo.image_input(*_shape, 1), apply_kwargs={'train': False}, paper=_PAPER,
      reference_params=_mlp_count((_inputs, *_hidden, 10)),
      reference_source='closed form of the layer sizes (section 3)')
