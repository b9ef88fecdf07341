"""`mnist-digits bench --quick` as a smoke test (its numbers mean nothing), and the test-image
generator it measures with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_digits import preprocess, userimages
from mnist_digits.cli import main


def test_bench_quick_writes_json_and_markdown(capsys, mnist_run, tmp_path):
    assert main(["bench", "--quick", "--model", str(mnist_run), "--out", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads(path.read_text())
    assert result["quick"] is True and result["machine"]["cores"] >= 1
    realworld = result["sections"]["realworld"]
    assert realworld["images"] == 50 and 0 <= realworld["accuracy"] <= 1
    assert set(realworld["per_kind"]) <= set(userimages.KINDS)
    assert result["sections"]["inference"]["batched_images_per_second"] > 0
    assert "| `predict` (MNIST-style preprocessing) |" in path.with_suffix(".md").read_text()


def test_bench_only_one_section(capsys, mnist_run, tmp_path):
    assert main(["bench", "--quick", "--only", "inference", "--model", str(mnist_run),
                 "--out", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(json.loads(path.read_text())["sections"]) == ["inference"]


@pytest.mark.parametrize("kind", userimages.KINDS)
def test_every_kind_renders_a_decodable_image_with_a_digit(kind, mnist_test_set):
    images, labels = mnist_test_set
    image = userimages.render(images[0], int(labels[0]), np.random.default_rng(0), kind)
    assert image.kind == kind and image.label == 7
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert max(decoded.size) >= 160
    assert preprocess.preprocess_bytes(image.data) is not None
