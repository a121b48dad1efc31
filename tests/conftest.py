import os
import tempfile

import pytest
import torch

# Nothing a test does may leak into the user's home or Jupyter configuration.
_TMP_HOME = tempfile.mkdtemp(prefix="dgm-course-test-home-")
for var, sub in [("HOME", ""), ("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                 ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl")]:
    path = os.path.join(_TMP_HOME, sub)
    os.makedirs(path, exist_ok=True)
    os.environ[var] = path
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(params=[0, 1, 2], ids=lambda s: f"seed{s}")
def seed(request):
    torch.manual_seed(request.param)
    return request.param
