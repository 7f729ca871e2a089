import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("DCGAN_QUIET", "1")

# scripts/install.py installs dcgan-tensorrt only where NVIDIA's driver is present. Its
# metadata, cache-key and refusal logic needs neither TensorRT nor a GPU, so it is tested
# everywhere: without the distribution installed, import the package from its source folder.
if importlib.util.find_spec("dcgan_tensorrt") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
