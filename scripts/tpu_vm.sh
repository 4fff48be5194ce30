#!/usr/bin/env bash
# Runs a jaxpapers experiment on a Cloud TPU VM (one host or a multi-host pod slice).
#
#   export TPU_NAME=my-tpu ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 RUNTIME_VERSION=tpu-ubuntu2204-base
#   scripts/tpu_vm.sh create                 # create the TPU VM
#   scripts/tpu_vm.sh setup                  # copy this checkout to every worker and install it
#   scripts/tpu_vm.sh run classify --config=experiments/configs/classify.py:digits_cnn \
#       --workdir=gs://my-bucket/runs/digits  # same command on every worker, joined with --multihost
#   scripts/tpu_vm.sh delete
#
# On a pod slice every worker must see the same --workdir (a gs:// bucket: orbax writes there
# directly) and the same data (TFDS_DATA_DIR=gs://...; `setup` installs gcsfs and google-cloud-storage
# for gs:// paths). Relaunching the same `run` command after a preemption resumes from the latest
# checkpoint. The workers need Python 3.12 (setup.cfg), from the runtime image or installed before
# `setup`: WORKER_PYTHON names it (default python3.12). Commands follow
# https://cloud.google.com/tpu/docs/jax-pods.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
WORKER_PYTHON=${WORKER_PYTHON:-python3.12}
JAX_VERSION=$(sed -n 's/^ *jax==\(.*\)$/\1/p' "$(dirname "$0")/../setup.cfg")

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"
}

case "${1:-}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
      --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION"
    ;;
  setup)
    archive=$(mktemp --suffix=.tar.gz)
    trap 'rm -f "$archive"' EXIT
    git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
    gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME":jaxpapers.tar.gz --zone="$ZONE" --worker=all
    on_all_workers "set -e; rm -rf jaxpapers && mkdir jaxpapers && tar -xzf jaxpapers.tar.gz -C jaxpapers
      cd jaxpapers && $WORKER_PYTHON -m venv .venv && .venv/bin/pip install -q -e . gcsfs google-cloud-storage
      .venv/bin/pip install -q 'jax[tpu]==$JAX_VERSION' \
        -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
    ;;
  run)
    shift
    experiment=${1:?usage: tpu_vm.sh run <experiment> --config=... --workdir=gs://...}
    shift
    args=""
    if (($#)); then args=$(printf ' %q' "$@"); fi  # quoted for the worker's shell
    on_all_workers "cd jaxpapers && TFDS_DATA_DIR=$(printf '%q' "${TFDS_DATA_DIR:-}") \
      .venv/bin/python -m experiments.$experiment --multihost$args"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
