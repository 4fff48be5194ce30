"""Prints the mIoU table of finished `experiments.segment` runs (their results.json), markdown.

    python scripts/segment_table.py runs/seg300_unet runs/seg300_fcn8s ...
"""

import json
import pathlib
import sys

from jaxpapers import zoo

CLASSES = ('background', 'circle', 'square', 'triangle', 'diamond', 'cross')


def main(workdirs: list[str]) -> None:
  print('| run | model | steps | params | mIoU | pixel acc. | ' + ' | '.join(CLASSES) + ' | wall (s) |')
  print('|---|---|---:|---:|---:|---:|' + '---:|' * len(CLASSES) + '---:|')
  for workdir in workdirs:
    path = pathlib.Path(workdir) / 'results.json'
    if not path.exists():
      print(f'| {workdir} | (not finished) |')
      continue
    r = json.loads(path.read_text())
    e, name = r['eval'], r['config']['model']['name']
    params = zoo.count_params(name)
    ious = ' | '.join(f'{e[f"miou_iou_{c}"]:.3f}' for c in CLASSES)
    print(f'| {pathlib.Path(workdir).name} | `{name}` | {r["step"]} | {params:,} | '
          f'**{e["miou_miou"]:.3f}** | {e["miou_pixel_accuracy"]:.3f} | {ious} | '
          f'{r["wall_time_s"]:.0f} |')


if __name__ == '__main__':
  main(sys.argv[1:])
