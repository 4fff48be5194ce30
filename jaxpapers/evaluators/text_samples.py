"""Generated text after each evaluation, appended to `<workdir>/<file>` under a step header.

`fn(state, key) -> str`; the key is `fold_in(PRNGKey(seed), step)`, so each evaluation draws anew
but a rerun draws the same text.
"""

from __future__ import annotations

import jax
from etils import epath

from jaxpapers.evaluators.base import Evaluator


class TextSamples(Evaluator):
  defaults = {'seed': 0, 'file': 'samples.txt'}

  def __call__(self, state, step, writer):
    text = self.fn(state, jax.random.fold_in(jax.random.PRNGKey(self.config['seed']), step))
    if jax.process_index() == 0:
      with (epath.Path(writer.workdir) / self.config['file']).open('a') as f:
        f.write(f'--- step {step} ---\n{text}\n')
    return {}
