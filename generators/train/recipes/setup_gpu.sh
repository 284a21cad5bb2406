#!/usr/bin/env bash
# Source on a device machine (repo root): carried wheels (.whl/) on PYTHONPATH, this repo installed editable.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
