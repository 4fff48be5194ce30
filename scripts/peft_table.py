"""The PEFT table from finished runs of `experiments/peft_char_lm.py` (one workdir per method).

    python scripts/peft_table.py [--runs=runs]

Reads `<runs>/peft_<method>/results.json` for every method that has one and prints a markdown
table: trainable and total parameters, held-out bits per character on the target domain (the
adapted-to topics) and on the source domain (the pre-training topics, what adaptation forgot),
and the run's wall time.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

_RUNS = flags.DEFINE_string('runs', 'runs', 'Folder holding the peft_<method> workdirs.')
METHODS = ('pretrain', 'frozen', 'full', 'lora', 'adapter', 'prefix', 'prompt', 'bitfit', 'ia3')


def main(argv):
  del argv
  print('| method | trainable params | total params | target bits/char | source bits/char | wall s |')
  print('|---|---:|---:|---:|---:|---:|')
  for method in METHODS:
    path = os.path.join(_RUNS.value, f'peft_{method}', 'results.json')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      results = json.load(f)
    e = results['eval']
    print(f'| {method} | {round(e["trainable_params"]):,} | {round(e["total_params"]):,} | '
          f'{e["target_bits_per_char"]:.3f} | {e["source_bits_per_char"]:.3f} | '
          f'{results["wall_time_s"]:.0f} |')


if __name__ == '__main__':
  app.run(main)
