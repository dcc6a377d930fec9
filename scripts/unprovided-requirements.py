"""Print edge's requirements (with the extras named as arguments) that the system does not provide.

For a virtual environment that sees the system's packages (--system-site-packages), where numpy,
OpenCV, PyYAML, psutil and matplotlib come from Debian: PyPI has no 32-bit ARM wheels of them,
and picamera2 on a Raspberry Pi is built against Debian's numpy. The TFLite runtime is left out:
scripts/setup.sh chooses it from the Python's pointer size, which no requirement marker can see.
Run with the environment's Python after `pip install --no-deps -e .`.
"""

import importlib.util
import re
import sys
from importlib.metadata import requires

wanted = set(sys.argv[1:])
provided_as = {  # distribution name -> module the system's package provides
    "numpy": "numpy",
    "opencv-python-headless": "cv2",
    "pyyaml": "yaml",
    "psutil": "psutil",
    "matplotlib": "matplotlib",
}
for req in requires("edge") or []:
    spec, _, marker = req.partition(";")
    name = re.match(r"[A-Za-z0-9._-]+", spec.strip()).group(0).lower().replace("_", "-")
    extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
    if extra and extra.group(1) not in wanted:
        continue
    if name == "ai-edge-litert":  # the runtime is chosen by setup.sh, not by a marker
        continue
    module = provided_as.get(name)
    if module and importlib.util.find_spec(module) is not None:
        continue
    print(spec.strip())
