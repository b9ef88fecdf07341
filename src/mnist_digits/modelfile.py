"""Model files: saved atomically with a manifest, loaded only if safe.

A model file from somewhere else is untrusted input. Loading therefore:
- accepts only the `.keras` format, and explains why others are refused (HDF5 and pickle files
  can run code on load; a SavedModel folder is a graph Keras cannot check);
- reads the archive's `config.json` first and refuses Lambda layers (they carry Python code) and
  classes that are neither Keras's nor registered by this package, naming them;
- then loads with `safe_mode=True`, Keras's own guard against code in the file;
- checks the file against its manifest, `<name>.manifest.json` beside it (SHA-256, versions,
  class names, input shape), and warns when they disagree: the file changed after it was saved.

Saving writes to a temporary file and renames it, so a crash never leaves half a model, then
writes the manifest the same way. A saved model is calibrated in place
(`calibrate_saved_model`): a trained run and an ensemble both end that way.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

# augment, calibrate and layers register their layers with Keras, which both the class check and
# loading need.
from mnist_digits import __version__, augment, backend, calibrate, data, layers, runs  # noqa: F401
from mnist_digits.errors import RunError

log = logging.getLogger(__name__)

CLASS_NAMES = [str(d) for d in range(data.NUM_CLASSES)]

_REFUSED_SUFFIXES = {
    ".h5": "an HDF5 (.h5) model, the legacy format, which can carry Python code (Lambda layers) "
           "that runs on load",
    ".hdf5": "an HDF5 model, the legacy format, which can carry Python code that runs on load",
    ".pkl": "a pickle file, which runs arbitrary code when loaded",
    ".pickle": "a pickle file, which runs arbitrary code when loaded",
    ".joblib": "a joblib (pickle) file, which runs arbitrary code when loaded",
    ".pt": "a PyTorch file (pickle inside), which can run code when loaded",
    ".pb": "a TensorFlow graph, which Keras cannot check for unsafe operations",
}
_CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def manifest_path(path: str | os.PathLike) -> Path:
    """`model.keras` -> `model.manifest.json`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.manifest.json")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves `model` to `path` (a `.keras` file) atomically, then its manifest."""
    path = Path(path)
    with runs.atomic_path(path) as tmp:
        model.save(tmp)
        digest, size = sha256_file(tmp), tmp.stat().st_size
    runs.write_json(manifest_path(path), {
        "file": path.name,
        "sha256": digest,
        "bytes": size,
        "model": model.name,
        "class_names": CLASS_NAMES,
        "input_shape": list(model.input_shape[1:]),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "backend_version": backend.version(keras.backend.backend()),
        "mnist_digits": __version__,
        "saved": datetime.datetime.now().isoformat(timespec="seconds"),
    })


def _classes(config: Any) -> Iterator[dict[str, Any]]:
    """Every serialized object (a dict with a `class_name`) in a Keras config, depth first."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _classes(value)


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "3.15.1" -> (3, 15, 1); "" -> ()."""
    numbers = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def check_archive(path: Path) -> None:
    """Refuses a `.keras` archive that holds code or classes this package does not know.

    Raises:
        RunError: not a Keras archive, a Lambda layer, or an unknown class.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) \
                if "metadata.json" in archive.namelist() else {}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{path} is not a Keras model archive ({err}); was it saved with "
                       f"model.save('model.keras')?") from None
    saved_with = str(metadata.get("keras_version", ""))
    if _release(saved_with) > _release(keras.__version__):
        # A newer Keras may store layers and options this one reads wrongly or not at all.
        raise RunError(f"{path} was saved with Keras {saved_with}, newer than this Keras "
                       f"{keras.__version__}; upgrade it (pip install -U keras) to load the model")
    known = set(keras.saving.get_custom_objects())
    for obj in _classes(config):
        name = obj.get("class_name")
        if not isinstance(name, str):
            continue
        if name in _CODE_LAYERS:
            raise RunError(f"{path} contains a {name} layer, which holds Python code that would "
                           f"run on load; refused. Only models built from standard layers load")
        module = obj.get("module") or ""
        registered = obj.get("registered_name")
        if module and not module.startswith("keras") and registered not in known:
            raise RunError(f"{path} uses the class {registered or name} from {module}, which is "
                           f"neither a Keras class nor one of mnist-digits'; refused")


def check_manifest(path: Path) -> dict[str, Any] | None:
    """Compares a model file with its manifest; logs a warning on any mismatch.

    Returns:
        The manifest, or None if there is none.
    """
    manifest_file = manifest_path(path)
    if not manifest_file.exists():
        log.info("%s has no manifest (%s); its integrity cannot be checked", path,
                 manifest_file.name)
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
        expected = manifest["sha256"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        log.warning("%s: unreadable manifest %s (%s); the model's integrity is unchecked", path,
                    manifest_file, err)
        return None
    actual = sha256_file(path)
    if actual != expected:
        log.warning("%s does NOT match its manifest: SHA-256 %s, manifest says %s. The file "
                    "changed after it was saved (edited, damaged or replaced); retrain or "
                    "restore it unless you know why", path, actual[:16], expected[:16])
    elif manifest.get("keras") != keras.__version__:
        log.info("%s was saved with Keras %s; this is Keras %s", path, manifest.get("keras"),
                 keras.__version__)
    return manifest


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a model from a run folder or a `.keras` file, safely (see the module docstring).

    Raises:
        RunError: the path is missing, in a refused format, holds unsafe or unknown classes, or
            cannot be loaded.
    """
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").exists():
        raise RunError(f"{path} is a TensorFlow SavedModel folder: a compiled graph that Keras "
                       f"cannot check for unsafe operations, so it is not loaded. Pass a .keras "
                       f"file or a run folder (SavedModels are for serving elsewhere, see "
                       f"`mnist-digits export`)")
    if not path.exists():
        raise RunError(f"model {path} not found; pass 'packaged', a run folder or a .keras "
                       f"file")
    if path.is_dir() or path.name == runs.LATEST:
        path = runs.resolve_run_dir(path) / runs.MODEL
    if path.suffix.lower() in _REFUSED_SUFFIXES:
        raise RunError(f"{path} is {_REFUSED_SUFFIXES[path.suffix.lower()]}; refused. Only "
                       f".keras files (or run folders) are loaded")
    if path.suffix != ".keras":
        raise RunError(f"{path}: only .keras model files (or run folders) can be loaded; other "
                       f"formats can run code on load or are not portable")
    if not path.is_file():
        raise RunError(f"model file {path} not found")
    check_archive(path)
    check_manifest(path)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # Keras raises many types for a bad file; all mean the same here.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"cannot load model {path}: {reason}") from None


def as_float32(trained: keras.Model) -> keras.Model:
    """`trained` with every layer computing in float32 (the model itself if all of them do).

    Mixed precision is a training setting: the weights are float32 already, and a float32
    model predicts, calibrates and exports like every other run's on any hardware, where
    bfloat16 arithmetic is slow on chips without bfloat16 units.
    """
    if all(layer.dtype_policy.name == "float32" for layer in trained.layers):
        return trained

    def rebuilt(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    model = keras.models.clone_model(trained, clone_function=rebuilt, recursive=True)
    model.set_weights(trained.get_weights())
    return model


def calibrate_saved_model(path: Path, splits: data.Splits) -> float:
    """Fits a temperature on the validation set and stores it in the model file at `path`,
    the model rewritten in float32 if it was trained in mixed precision (`as_float32`).

    Returns:
        The temperature.
    """
    model = as_float32(calibrate.uncalibrated(load_model(path)))
    probabilities = model.predict(splits.x_val, batch_size=1024, verbose=0)
    temperature = calibrate.fit_temperature(splits.y_val.argmax(axis=1), probabilities)
    save_model(calibrate.with_temperature(model, temperature), path)
    log.info("calibration: temperature %.3f fitted on %d validation images", temperature,
             len(splits.x_val))
    return temperature
