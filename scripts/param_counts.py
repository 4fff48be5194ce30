"""Prints every zoo preset with its parameter count, the reference count and the difference.

    python scripts/param_counts.py [name_substring ...]

Counts come from `jax.eval_shape` of each preset's `init`: nothing is allocated. Exits with status 1
if any preset differs from its reference.
"""

import sys

from jaxpapers import zoo


def main(filters: list[str]) -> int:
  names = [n for n in zoo.names() if not filters or any(f in n for f in filters)]
  print(f'{"preset":<32} {"params":>15} {"reference":>15} {"diff":>10}  source')
  mismatches = 0
  for name in names:
    preset = zoo.get(name)
    count = zoo.count_params(name)
    reference = preset.reference_params
    if reference is None:
      shown, diff = 'none', ''
    else:
      shown, diff = f'{reference:,}', f'{count - reference:+,}'
      mismatches += count != reference
    print(f'{name:<32} {count:>15,} {shown:>15} {diff:>10}  {preset.reference_source}')
  print(f'{len(names)} presets, {mismatches} differ from their reference')
  return 1 if mismatches else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
