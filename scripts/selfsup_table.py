"""The WORKSPACE.md table of the self-supervised runs (scripts/selfsup_runs.sh): linear-probe and
k-NN accuracy on frozen encoder features, per method, with the random-init encoder as a row.

    python scripts/selfsup_table.py [runs/selfsup]
"""

from __future__ import annotations

import json
import pathlib
import sys

METHODS = ('simclr', 'moco', 'byol', 'simsiam', 'swav', 'barlow_twins', 'supervised')
COLUMNS = [(kind, 'val', target) for kind in ('probe', 'knn') for target in ('shape', 'colour')]


def row(name: str, evaluation: dict, prefix: str, wall: str, loss: str) -> str:
  cells = [f'{100 * evaluation[f"{prefix}{kind}_{split}_{target}"]:.1f}'
           for kind, split, target in COLUMNS]
  return f'| {name} | ' + ' | '.join(cells) + f' | {loss} | {wall} |'


def main(root: str = 'runs/selfsup') -> None:
  header = ' | '.join(f'{kind} {target}' for kind, _, target in COLUMNS)
  print(f'| encoder | {header} | final train loss | wall time |')
  print('|' + '---|' * (len(COLUMNS) + 3))
  random = None
  for method in METHODS:
    path = pathlib.Path(root) / method / 'results.json'
    if not path.exists():
      print(f'| {method} | ' + ' | '.join('-' for _ in COLUMNS) + ' | not run | |')
      continue
    results = json.loads(path.read_text())
    evaluation = results['eval']
    random = random or evaluation
    print(row(method, evaluation, '', f'{results["wall_time_s"] / 60:.1f} min',
              f'{results["train"]["loss"]:.3f}'))
  if random is not None:
    print(row('random init', random, 'random_', '-', '-'))


if __name__ == '__main__':
  main(*sys.argv[1:])
