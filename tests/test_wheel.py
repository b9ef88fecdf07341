"""The package as a user installs it: `python -m build`, the wheel into a fresh virtual
environment, then used from a folder outside the checkout: `predict`, `mnist_digits.read`, a
one-epoch `train` on the data the wheel carries, `--version`, the page and Swagger's files.

Built without isolation (setuptools comes from the lock) and installed without dependencies:
the fresh environment sees the dependencies of the test environment, which `make` installed
from the lock, through a `.pth` file, and nothing of the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MNIST_DIGITS_DATA_DIR", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                 str(ROOT)], cwd=out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    done = _run([sys.executable, "-m", "venv", "--without-pip", str(home)], cwd=home)
    assert done.returncode == 0, done.stderr
    python = home / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                            "['purelib'])"], cwd=home).stdout.strip())
    # The test environment's packages (installed from the lock), after the venv's own.
    (purelib / "lock-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = dist.glob("*.whl")
    done = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                 "--no-index", "--quiet", str(wheel)], cwd=home)
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def test_the_sdist_and_the_wheel_carry_the_model_the_page_and_the_data(dist):
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("mnist_digits/pretrained/reader.keras", "mnist_digits/py.typed",
                   "mnist_digits/pretrained/MODEL_CARD.md", "mnist_digits/serve/static/index.html",
                   *(f"mnist_digits/mnist_data/{name}-ubyte.gz" for name in (
                       "train-images-idx3", "train-labels-idx1", "t10k-images-idx3",
                       "t10k-labels-idx1"))):
        assert needed in names, needed
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    assert members["src/mnist_digits/mnist_data/train-images-idx3-ubyte.gz"].isfile()
    assert "CHANGELOG.md" in members


def test_the_installed_wheel_reads_and_trains_outside_the_checkout(venv, tmp_path):
    bin_ = venv / "bin"
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(bin_ / "python"), "-c", "import mnist_digits, json; print(json.dumps("
                 "[mnist_digits.__file__, mnist_digits.__version__]))"], cwd=work)
    path, version = json.loads(where.stdout)
    assert Path(path).is_relative_to(venv) and not Path(path).is_relative_to(ROOT), path

    done = _run([str(bin_ / "mnist-digits"), "--version"], cwd=work)
    assert done.returncode == 0 and done.stdout.strip() == f"mnist-digits {version}"

    done = _run([str(bin_ / "mnist-digits"), "predict", str(EXAMPLES), "--format", "jsonl"],
                cwd=work)
    assert done.returncode == 0, done.stderr
    texts = {Path(r["path"]).name: r["text"] for r in map(json.loads, done.stdout.splitlines())}
    assert texts["seven.png"] == "7" and texts["number-4021.png"] == "4021", texts

    script = ("import mnist_digits; from PIL import Image; import numpy as np\n"
              f"path = {str(EXAMPLES / 'seven.png')!r}\n"
              "image = Image.open(path)\n"
              "print([r.text for r in mnist_digits.read([path, open(path, 'rb').read(), "
              "image, np.asarray(image)])])\n"
              "from importlib import resources\n"
              "print(resources.files('mnist_digits.serve').joinpath('static/index.html')"
              ".is_file())\n")
    done = _run([str(bin_ / "python"), "-c", script], cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['7', '7', '7', '7']", "True"], done.stdout
    assert done.stderr == "", done.stderr  # no framework start-up notices from the API

    done = _run([str(bin_ / "mnist-digits"), "train", "--model", "mlp_small", "--epochs", "1",
                 "--limit", "600", "--val-size", "100", "--results-dir", "runs"], cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = work / "runs" / "latest"
    assert json.loads((run_dir / "config.json").read_text())["config"]["limit"] == 600
    # Real digits, learnt a little: well above chance (0.1) after one epoch on 500 images.
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"] > 0.25
