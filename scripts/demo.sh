#!/usr/bin/env bash
# Installs the project, writes the sample dataset and runs the seed request on it, with no server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dataset-assets sample sample_images
.venv/bin/dataset-assets run sample_images \
  --op '{"Resize": {"scaling_factor": 0.5}}' --op GrayScale --op '{"Noise": {"noise_level": 0.1}}'
