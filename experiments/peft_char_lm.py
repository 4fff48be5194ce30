"""Parameter-efficient fine-tuning of the byte-level language model: one table for the PEFT family.

Methods (`config.peft.method`): full fine-tuning; LoRA (Hu et al. 2021, arXiv:2106.09685); bottleneck
adapters (Houlsby et al. 2019, arXiv:1902.00751); prefix tuning (Li & Liang 2021, arXiv:2101.00190);
prompt tuning (Lester et al. 2021, arXiv:2104.08691); BitFit (Ben Zaken et al. 2021,
arXiv:2106.10199); IA3 (Liu et al. 2022, arXiv:2205.05638); and `frozen` (no update: the pre-trained
model's own figures). Implementations: `jaxpapers.nn.lora`, `adapters`, `prefix_tuning`,
`prompt_tuning`.

    python -m experiments.peft_char_lm --config=experiments/configs/peft_char_lm.py:pretrain \
        --workdir=runs/peft_pretrain
    python -m experiments.peft_char_lm --config=experiments/configs/peft_char_lm.py:lora \
        --workdir=runs/peft_lora --config.peft.pretrained=runs/peft_pretrain

Domains: the offline corpus (`jaxpapers.data.text_corpus`) by document name. The source domain is
the topics from 'f' on ("floating", "for", "formatstrings", ..., "yield"); the target domain the
topics before 'f' ("assert", "assignment", ..., "exceptions"). `pretrain` trains the GPT on the
source domain's training documents; every other method starts from that run's final parameters
and adapts to the target domain's training documents. Each evaluation reports, on the held-out
documents (`text_corpus`'s validation split) of each domain, `target_bits_per_char` (the table's
figure) and `source_bits_per_char` (what adaptation forgot), plus `trainable_params` and
`total_params` (the adapted model's, base included).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.data import pipeline, text_corpus
from jaxpapers.errors import ConfigError
from jaxpapers.nn import adapters, lora, prefix_tuning, prompt_tuning
from jaxpapers.train import checkpoint, cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

METHODS = ('pretrain', 'frozen', 'full', 'lora', 'adapter', 'prefix', 'prompt', 'bitfit', 'ia3')
BOUNDARY = 'f'  # Topics named before it are the target domain, the rest the source domain.


def domain_bytes(split: str, domain: str) -> np.ndarray:
  """One domain's documents of one split of the corpus, joined as `text_corpus.load` joins them."""
  docs = text_corpus.documents()
  names = [n for n in text_corpus.split_names()[split] if (n < BOUNDARY) == (domain == 'target')]
  return np.frombuffer('\n\n'.join(docs[n] for n in names).encode('utf-8'), np.uint8).copy()


def make_method(peft) -> lora.Adapter | None:
  """The adapter object of a method (None for those that change no architecture)."""
  return {
      'lora': lambda: lora.LoRA(rank=peft.rank, alpha=peft.lora_alpha),
      'adapter': lambda: adapters.BottleneckAdapter(bottleneck=peft.bottleneck),
      'prefix': lambda: prefix_tuning.PrefixTuning(length=peft.prefix_length),
      'prompt': lambda: prompt_tuning.PromptTuning(length=peft.prefix_length),
      'ia3': lora.IA3,
  }.get(peft.method, lambda: None)()


class PEFTCharLM(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d, peft = config.data, config.peft
    if peft.method not in METHODS:
      raise ConfigError(f'peft.method={peft.method!r}; valid: {", ".join(METHODS)}')
    if peft.method != 'pretrain' and not peft.pretrained:
      raise ConfigError(f'peft.method={peft.method!r} needs --config.peft.pretrained=<workdir of '
                        'a finished `pretrain` run>')
    self.model = zoo.build_from_config(config.model, vocab_size=text_corpus.VOCAB_SIZE,
                                       max_len=d.context)
    self.method = make_method(peft)
    train_domain = 'source' if peft.method == 'pretrain' else 'target'
    train = text_corpus.Windows(domain_bytes('train', train_domain), d.context + 1, d.train_stride)
    eval_rows, self._chars = [], {}
    for domain in ('target', 'source'):
      held_out = text_corpus.Windows(domain_bytes('validation', domain), d.context + 1, d.context)
      count = min(d.eval_windows or len(held_out), len(held_out))  # 0: every window
      tokens = np.stack([held_out[i]['tokens'] for i in range(count)])
      self._chars[domain] = text_corpus.num_characters(tokens[:, 1:])
      eval_rows += [{'tokens': t, 'target': np.float32(domain == 'target')} for t in tokens]
    self._windows = {'target': sum(float(r['target']) for r in eval_rows)}
    self._windows['source'] = len(eval_rows) - self._windows['target']
    self.data = pipeline.Splits(train=train, eval=eval_rows)
    self._tokens = jnp.zeros((1, d.context), jnp.int32)
    # The final parameters of the `pretrain` run (NumPy arrays).
    self._pretrained = (checkpoint.load_params(peft.pretrained) if peft.method != 'pretrain'
                        else None)
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def _trainable(self, params):
    method = self.config.peft.method
    if method == 'bitfit':
      return lora.bitfit_mask(params)
    if self.method is not None:
      return self.method.trainable(params)
    return jax.tree.map(lambda _: method in ('pretrain', 'full'), params)

  def _tx(self, params):
    trainable = self._trainable(params)
    if all(jax.tree.leaves(trainable)):
      return self.tx
    return lora.partition_optimizer(self.tx, trainable)

  def init(self, rng):
    if self._pretrained is None:
      params = self.model.init(rng, self._tokens)['params']
    elif self.method is not None:
      params = self.method.init(self.model, self._pretrained, rng, self._tokens)
    else:
      params = jax.tree.map(jnp.asarray, self._pretrained)
    return TrainState.create(params=params, tx=self._tx(params), rng=rng)

  def _nll(self, params, tokens, **kwargs):
    if self.method is not None:
      logits = self.method.apply(self.model, {'params': params}, tokens[:, :-1], **kwargs)
    else:
      logits = self.model.apply({'params': params}, tokens[:, :-1], **kwargs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      return self._nll(params, batch['tokens'], train=True,
                       rngs={'dropout': state.step_rng('dropout')}).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(self._tx(state.params), grads), {
        'loss': loss, 'bits_per_byte': loss / math.log(2)}

  def eval_step(self, state: TrainState, batch):
    mask, target = batch['mask'], batch['target']
    bits = jnp.sum(self._nll(state.params, batch['tokens']), axis=1) / math.log(2) * mask
    total = self._windows['target'] + self._windows['source']
    trainable = sum(int(np.prod(p.shape)) for p, t in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(self._trainable(state.params))) if t)
    # The loop divides every sum by the total window count: these scales undo that.
    return {'count': jnp.sum(mask),
            'target_bits_per_char': jnp.sum(bits * target) * total / self._chars['target'],
            'source_bits_per_char': jnp.sum(bits * (1 - target)) * total / self._chars['source'],
            'trainable_params': trainable * jnp.sum(mask),
            'total_params': zoo.num_params(state.params) * jnp.sum(mask)}


if __name__ == '__main__':
  cli.run(PEFTCharLM)
