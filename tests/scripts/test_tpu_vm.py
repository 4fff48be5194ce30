"""scripts/tpu_vm.sh against a stand-in `gcloud` that records each command it is given."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, 'scripts', 'tpu_vm.sh')
RECORDER = f'''#!{sys.executable}
import json, os, sys
with open(os.environ['GCLOUD_CALLS'], 'a') as f:
  f.write(json.dumps(sys.argv[1:]) + '\\n')
'''


@pytest.fixture
def tpu_vm(tmp_path):
  """Runs tpu_vm.sh with the stand-in gcloud first on PATH; returns the argv of each gcloud call."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'gcloud').write_text(RECORDER)
  (bin_dir / 'gcloud').chmod(0o755)
  calls = tmp_path / 'calls.jsonl'

  def tpu_vm_sh(*args, **environment):
    env = {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
           'GCLOUD_CALLS': str(calls), 'TPU_NAME': 'my-tpu', 'ZONE': 'us-central2-b', **environment}
    calls.write_text('')
    result = subprocess.run(['bash', SCRIPT, *args], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]

  return tpu_vm_sh


def ssh_command(call):
  """The shell command an `ssh --worker=all` call runs on every worker."""
  assert call[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-tpu'], call
  assert '--zone=us-central2-b' in call and '--worker=all' in call, call
  (command,) = [a[len('--command='):] for a in call if a.startswith('--command=')]
  return command


def test_create_and_delete(tpu_vm):
  assert tpu_vm('create', ACCELERATOR_TYPE='v4-32') == [[
      'compute', 'tpus', 'tpu-vm', 'create', 'my-tpu', '--zone=us-central2-b',
      '--accelerator-type=v4-32', '--version=tpu-ubuntu2204-base']]
  assert tpu_vm('delete') == [
      ['compute', 'tpus', 'tpu-vm', 'delete', 'my-tpu', '--zone=us-central2-b', '--quiet']]


def test_setup_copies_the_checkout_to_every_worker_and_installs_the_pinned_jax(tpu_vm):
  scp, ssh = tpu_vm('setup')
  assert scp[:4] == ['compute', 'tpus', 'tpu-vm', 'scp'] and scp[5:] == [
      'my-tpu:jaxpapers.tar.gz', '--zone=us-central2-b', '--worker=all']
  assert not os.path.exists(scp[4]), 'the local archive is left behind'
  command = ssh_command(ssh)
  with open(os.path.join(ROOT, 'setup.cfg')) as f:
    jax_pin = next(line.strip() for line in f if line.strip().startswith('jax=='))
  assert f"'jax[tpu]=={jax_pin[len('jax=='):]}'" in command
  assert 'tar -xzf jaxpapers.tar.gz -C jaxpapers' in command
  assert 'python3.12 -m venv .venv' in command  # the project needs Python 3.12 (setup.cfg)


def run_on_a_worker(command, home):
  """Runs a worker's command with a stand-in `.venv/bin/python` that records its argv and data dir."""
  python = home / 'jaxpapers' / '.venv' / 'bin' / 'python'
  python.parent.mkdir(parents=True)
  python.write_text(f'#!{sys.executable}\nimport json, os, sys\n'
                    'print(json.dumps([sys.argv[1:], os.environ.get("TFDS_DATA_DIR")]))\n')
  python.chmod(0o755)
  result = subprocess.run(['bash', '-c', command], cwd=home, capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def test_run_starts_the_experiment_on_every_worker_with_the_flags_intact(tpu_vm, tmp_path):
  flags = ['--config=experiments/configs/classify.py:digits_cnn',
           '--workdir=gs://my-bucket/runs/digits two', "--config.model=it's $HOME \"quoted\""]
  (ssh,) = tpu_vm('run', 'classify', *flags, TFDS_DATA_DIR='gs://my-bucket/tfds data')
  argv, data_dir = run_on_a_worker(ssh_command(ssh), tmp_path)
  assert argv == ['-m', 'experiments.classify', '--multihost', *flags]
  assert data_dir == 'gs://my-bucket/tfds data'


def test_run_with_no_flags_passes_no_empty_argument(tpu_vm, tmp_path):
  (ssh,) = tpu_vm('run', 'classify')
  argv, data_dir = run_on_a_worker(ssh_command(ssh), tmp_path)
  assert argv == ['-m', 'experiments.classify', '--multihost']
  assert data_dir == ''
