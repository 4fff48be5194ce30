"""Box-AP (and, for detectors with masks, mask-AP) table of finished `experiments.detect` runs
(markdown) and, with --curve, the AP-vs-step figure of those runs (e.g. DETR against Deformable
DETR, the latter's faster-convergence claim).

    python scripts/detection_table.py runs/det_ssd runs/det_detr runs/det_deformable \
        --curve=docs/figures/detr_vs_deformable_map.png
"""

import argparse
import json
import pathlib

from jaxpapers import zoo
from jaxpapers.train import metrics


def table(workdirs: list[str]) -> None:
  print('| run | model | steps | params | box AP | AP50 | AP75 | mask AP | mask AP50 | test loss '
        '| wall (s) |')
  print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for workdir in workdirs:
    path = pathlib.Path(workdir) / 'results.json'
    if not path.exists():
      print(f'| {workdir} | (not finished) |')
      continue
    r = json.loads(path.read_text())
    e, name = r['eval'], r['config']['model']['name']
    print(f'| {pathlib.Path(workdir).name} | `{name}` | {r["step"]} | {zoo.count_params(name):,} | '
          f'**{e["box_map_ap"]:.3f}** | {e["box_map_ap50"]:.3f} | {e["box_map_ap75"]:.3f} | '
          f'{_optional(e, "box_map_mask_ap")} | {_optional(e, "box_map_mask_ap50")} | '
          f'{e["loss"]:.3f} | {r["wall_time_s"]:.0f} |')


def _optional(metrics: dict, key: str) -> str:
  return f'{metrics[key]:.3f}' if key in metrics else '-'


def curve(workdirs: list[str], out: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  for workdir in workdirs:
    history = metrics.read_history(workdir, 'eval/')
    if 'box_map_ap' not in history:
      continue
    name = json.loads((pathlib.Path(workdir) / 'results.json').read_text())['config']['model']['name']
    for ax, key in zip(axes, ('box_map_ap', 'box_map_ap50')):
      steps, values = history[key]
      ax.plot(steps, values, marker='o', label=name)
  for ax, title in zip(axes, ('COCO box AP (0.50:0.95)', 'box AP50')):
    ax.set_xlabel('training step (batch 32)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle('scenes test split (500 images), pycocotools')
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  print(f'wrote {out}')


if __name__ == '__main__':
  parser = argparse.ArgumentParser()
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--curve', default='')
  args = parser.parse_args()
  table(args.workdirs)
  if args.curve:
    curve([w for w in args.workdirs if (pathlib.Path(w) / 'results.json').exists()], args.curve)
