"""The experiment command line in subprocesses: errors, SIGKILL/SIGTERM and two-process runs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import chex
import pytest

from jaxpapers.train import checkpoint

CONFIG = 'experiments/configs/classify.py:tiny'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(workdir, *overrides, config=CONFIG):
  return [sys.executable, '-m', 'experiments.classify', f'--config={config}', f'--workdir={workdir}',
          *overrides]


def env(devices=None):
  environment = dict(os.environ)
  if devices is not None:  # A process with its own number of simulated CPU devices.
    environment.pop('XLA_FLAGS', None)
    environment['JAX_NUM_CPU_DEVICES'] = str(devices)
  return environment


def run(args, devices=None, timeout=240):
  return subprocess.run(args, cwd=ROOT, env=env(devices), capture_output=True, text=True,
                        timeout=timeout)


def error_line(result):
  lines = result.stderr.strip().splitlines()
  assert 'Traceback' not in result.stderr, result.stderr
  return lines[-1]


@pytest.mark.parametrize('override, expected', [
    ('--config.train.stepz=3', "unknown config key 'train.stepz': config.train has no key 'stepz'; "
                               'valid keys: batch_size, checkpoint_every, cpu_kernels, '
                               'eval_every, log_every, max_to_keep, steps'),
    ('--config.optimizer.lr=3', "unknown config key 'optimizer.lr': config has no key 'optimizer'"),
    ('--config.train.steps=abc', 'invalid literal for int()'),
    ('--config.train.batch_size=12', 'must be divisible by the number of devices (8)'),
    ('--config.train.steps=-5', 'config.train.steps=-5 must be a positive integer'),
    ('--config.train.batch_size=0', 'config.train.batch_size=0 must be a positive integer'),
    ('--config.data.eval_split=validation', "dataset 'sklearn_digits' has no split 'validation'; "
                                            'its splits: '),
    ('--config.optim.name=rmsprop', 'valid: sgd, momentum, adam, adamw'),
    ('--config.model.name=lenet6', "model name 'lenet6': unknown zoo preset 'lenet6'; known presets:"),
    ('--config.model.name=lenet5', "model 'lenet5' does not accept sklearn_digits images of shape (8, 8, 1)"),
])
def test_bad_config_gives_one_clear_line(tmp_path, override, expected):
  result = run(command(tmp_path, override))
  assert result.returncode == 2
  line = error_line(result)
  assert line.startswith('error: ') and expected in line, line


def test_unknown_preset_lists_the_valid_ones(tmp_path):
  result = run(command(tmp_path, config='experiments/configs/classify.py:huge'))
  assert result.returncode == 2
  assert error_line(result) == ("error: unknown preset 'huge'; valid presets: digits_cnn, "
                                'digits_mlp, digits_vit, shapes_cnn, vgg19_bn_mini_shapes, tiny, '
                                'cifar10_resnet20, cifar10_resnet56, cifar10_wrn_28_10')


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  result = run(command(tmp_path, '--config.data.name=cifar10', f'--config.data.data_dir={tmp_path}'))
  assert result.returncode == 1
  line = error_line(result)
  assert "dataset 'cifar10' is not prepared" in line and 'tfds build cifar10' in line, line


def start(workdir, *overrides):
  return subprocess.Popen(command(workdir, *overrides), cwd=ROOT, env=env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_checkpoint(process, workdir, step, timeout=120):
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert process.poll() is None, 'the run ended before its first checkpoint'
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.01)


# Long enough to be stopped after its first checkpoint (about 2 s of steps left at 500 steps/s).
LONG_STEPS = 1200
LONG_RUN = (f'--config.train.steps={LONG_STEPS}', '--config.train.checkpoint_every=100',
            '--config.train.log_every=100', '--config.train.eval_every=0')


def test_sigkill_then_relaunch_equals_uninterrupted_run(digits_dir, tmp_path):
  overrides = (*LONG_RUN, f'--config.data.data_dir={digits_dir}')
  killed = start(tmp_path / 'killed', *overrides)
  wait_for_checkpoint(killed, tmp_path / 'killed', 100)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert killed.returncode == -signal.SIGKILL
  assert checkpoint.Checkpointer(str(tmp_path / 'killed')).latest_step() < LONG_STEPS
  resumed = run(command(tmp_path / 'killed', *overrides))
  assert resumed.returncode == 0, resumed.stderr[:6000]
  assert 'resumed from' in resumed.stderr
  straight = run(command(tmp_path / 'straight', *overrides))
  assert straight.returncode == 0, straight.stderr[-3000:]
  chex.assert_trees_all_equal(checkpoint.load_params(tmp_path / 'killed'),
                              checkpoint.load_params(tmp_path / 'straight'))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(digits_dir, tmp_path):
  process = start(tmp_path, *LONG_RUN, f'--config.data.data_dir={digits_dir}')
  wait_for_checkpoint(process, tmp_path, 100)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 0, output[-3000:]
  step = checkpoint.Checkpointer(str(tmp_path)).latest_step()
  assert 100 < step < LONG_STEPS  # a checkpoint at the preemption step, not only the periodic one
  assert f'preempted at step {step}: checkpoint saved' in output
  with open(tmp_path / 'results.json') as f:
    results = json.load(f)
  assert results['status'] == 'preempted' and results['step'] == step
  assert set(results['train']) == {'accuracy', 'loss'}  # the shape of a finished run's results
  assert {'eval', 'config', 'wall_time_s', 'jax_version'} <= set(results)


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(digits_dir, tmp_path):
  overrides = ('--config.train.steps=12', '--config.train.batch_size=32',
               f'--config.data.data_dir={digits_dir}')
  port = free_port()
  workers = [subprocess.Popen(
      command(tmp_path / 'two', *overrides, '--multihost', f'--coordinator_address=127.0.0.1:{port}',
              '--num_processes=2', f'--process_id={i}'),
      cwd=ROOT, env=env(devices=2), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      for i in range(2)]
  outputs = [w.communicate(timeout=240)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  single = run(command(tmp_path / 'one', *overrides), devices=4)
  assert single.returncode == 0, single.stderr[-3000:]
  chex.assert_trees_all_close(checkpoint.load_params(tmp_path / 'two'),
                              checkpoint.load_params(tmp_path / 'one'), rtol=1e-5, atol=1e-6)
