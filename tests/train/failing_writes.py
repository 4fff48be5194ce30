"""A checkpoint writer that fails as a full disk does: in orbax's background commit, after the
first `n` saves. Run as a script, it is the classify command line with that writer.

    python tests/train/failing_writes.py --config=experiments/configs/classify.py:tiny --workdir=...
"""

import errno
import os
import runpy
import sys

import orbax.checkpoint as ocp


class _FailingWrite:
  """A commit future, as orbax's handlers return from `async_save`, whose write fails."""

  def __init__(self, directory):
    self._directory = str(directory)

  def result(self, timeout=None):
    del timeout
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._directory)


def fail_writes_after(n, setattr_=setattr):
  """Makes every train-state save after the first `n` fail in the background."""
  handler = ocp.StandardCheckpointHandler
  async_save, saves = handler.async_save, []

  async def failing_async_save(self, directory, *args, **kwargs):
    saves.append(directory)
    if len(saves) <= n:
      return await async_save(self, directory, *args, **kwargs)
    return [_FailingWrite(directory)]

  setattr_(handler, 'async_save', failing_async_save)


if __name__ == '__main__':
  fail_writes_after(1)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  runpy.run_module('experiments.classify', run_name='__main__')
