"""Faults around checkpoints: corrupt, truncated or partly written steps on resume, failed saves."""

import logging
import os
import shutil
import subprocess
import sys

import chex
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxpapers.errors import CheckpointError
from jaxpapers.train import checkpoint, devices

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_loop  # noqa: E402  (its tiny config and in-process runner)
import failing_writes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(digits_dir, steps):
  return test_loop.tiny_config(digits_dir, steps=steps, checkpoint_every=5, max_to_keep=2,
                               eval_every=0)


def run(digits_dir, workdir, steps):
  return test_loop.run(config(digits_dir, steps), workdir, mesh=devices.make_mesh(1))


@pytest.fixture(scope='module')
def uninterrupted(digits_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  return run(digits_dir, workdir, 20), checkpoint.load_params(workdir)


def data_files(step_dir):
  """The array data files of a step's train state (TensorStore OCDBT), largest first."""
  files = [os.path.join(root, name) for root, _, names in os.walk(step_dir / 'state')
           for name in names if os.path.basename(root) == 'd']
  return sorted(files, key=os.path.getsize, reverse=True)


def flip_bytes(step_dir):
  path = data_files(step_dir)[0]
  with open(path, 'r+b') as f:
    data = bytearray(f.read())
    for i in range(len(data) // 3, len(data) // 3 + 64):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


def truncate(step_dir):
  path = data_files(step_dir)[0]
  os.truncate(path, os.path.getsize(path) // 2)


def remove_data(step_dir):  # a step whose array data was never written out
  for path in data_files(step_dir):
    os.remove(path)


@pytest.mark.parametrize('damage', [flip_bytes, truncate, remove_data])
def test_a_damaged_latest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(
    digits_dir, tmp_path, caplog, uninterrupted, damage):
  run(digits_dir, tmp_path, 10)  # keeps steps 5 and 10
  damage(tmp_path / 'checkpoints' / '10')
  with caplog.at_level(logging.WARNING):
    resumed = run(digits_dir, tmp_path, 20)
  warnings = [r.getMessage() for r in caplog.records if 'moved it to' in r.getMessage()]
  assert len(warnings) == 1 and '\n' not in warnings[0], warnings
  assert warnings[0].startswith(f'cannot restore the checkpoint in {tmp_path}/checkpoints/10 (')
  assert warnings[0].endswith(f'moved it to {tmp_path}/checkpoints/10.corrupt-1 and resuming '
                              'from step 5')
  assert (tmp_path / 'checkpoints' / '10.corrupt-1' / 'state').is_dir()  # kept, not deleted
  straight, straight_params = uninterrupted
  assert resumed['step'] == straight['step'] == 20
  assert resumed['train'] == straight['train'] and resumed['eval'] == straight['eval']
  chex.assert_trees_all_equal(checkpoint.load_params(tmp_path), straight_params)


def test_when_no_checkpoint_restores_the_run_stops_in_one_line_and_moves_nothing(digits_dir,
                                                                                  tmp_path):
  run(digits_dir, tmp_path, 10)
  for step in ('5', '10'):
    truncate(tmp_path / 'checkpoints' / step)
  with pytest.raises(CheckpointError) as error:
    run(digits_dir, tmp_path, 20)
  message = str(error.value)
  assert '\n' not in message and len(message) < 800, message
  assert message.startswith(f'cannot restore the checkpoint in {tmp_path}/checkpoints/10 (')
  assert f'No checkpoint in {tmp_path}/checkpoints restores (2 tried)' in message
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10', '5']


def test_a_failed_save_stops_the_run_naming_the_step_and_cause_and_keeps_the_earlier_one(
    digits_dir, tmp_path, monkeypatch):
  failing_writes.fail_writes_after(1, monkeypatch.setattr)
  with pytest.raises(CheckpointError) as error:
    run(digits_dir, tmp_path, 20)
  message = str(error.value)
  assert '\n' not in message, message
  assert message.startswith(f'cannot save the checkpoint {tmp_path}/checkpoints/10 (OSError: ')
  assert 'No space left on device' in message and message.endswith('the earlier checkpoints are kept')
  monkeypatch.undo()
  assert ocp.CheckpointManager(checkpoint.checkpoint_directory(tmp_path)).all_steps() == [5]
  assert np.isfinite(checkpoint.load_params(tmp_path)['Dense_0']['kernel']).all()


def cli(workdir, digits_dir, *prefix):
  """The classify command line in a subprocess; `prefix` runs it through another script."""
  return subprocess.run(
      [sys.executable, *(prefix or ('-m', 'experiments.classify')),
       '--config=experiments/configs/classify.py:tiny', f'--workdir={workdir}',
       f'--config.data.data_dir={digits_dir}', '--config.train.steps=40',
       '--config.train.checkpoint_every=10', '--config.train.eval_every=0'],
      cwd=ROOT, capture_output=True, text=True, timeout=240)


def assert_one_line_and_earlier_checkpoints_kept(result, workdir, cause):
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-6000:]
  unlogged = [line for line in result.stderr.splitlines() if not line.startswith(('I1', 'W1'))]
  assert len(unlogged) == 1, unlogged
  assert unlogged[0].startswith(f'error: cannot save the checkpoint {workdir}/checkpoints/'), unlogged
  assert cause in unlogged[0], unlogged
  steps = ocp.CheckpointManager(checkpoint.checkpoint_directory(workdir)).all_steps()
  assert steps, 'no earlier checkpoint kept'
  assert np.isfinite(checkpoint.load_params(workdir)['Dense_0']['kernel']).all()


def test_the_command_line_reports_a_failed_write_in_one_line_with_exit_status_1(digits_dir,
                                                                               tmp_path):
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'failing_writes.py')
  result = cli(tmp_path, digits_dir, script)
  assert_one_line_and_earlier_checkpoints_kept(result, tmp_path, 'No space left on device')


def test_the_command_line_reports_a_full_disk_in_one_line_with_exit_status_1(digits_dir, tmp_path):
  if shutil.which('mount') is None:
    pytest.skip('no mount command here to make a small tmpfs')
  mountpoint = tmp_path / 'full'
  mountpoint.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=700k', 'tmpfs', str(mountpoint)],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f'cannot mount a small tmpfs here: {mounted.stderr.strip() or mounted.returncode}')
  try:
    result = cli(mountpoint / 'run', digits_dir)
    assert_one_line_and_earlier_checkpoints_kept(result, mountpoint / 'run', 'No space left on device')
  finally:
    subprocess.run(['umount', str(mountpoint)], check=True)
