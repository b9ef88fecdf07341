"""The seam for backend-specific code: what differs between Keras's backends lives here.

Today that is TensorFlow's start-up noise. TensorFlow 2.21 writes its absl and oneDNN notices
straight to file descriptor 2 while it is imported, before any Python logging or environment
variable can stop them (`TF_CPP_MIN_LOG_LEVEL` silences only some), so `import_keras_quietly`
captures the descriptor around the import and passes on every line that is not a known notice.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

# Notices TensorFlow prints on every start; anything else written during the import (a real
# error, a warning about the installation) still reaches stderr.
_START_UP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|cuda_(executor|driver)\.cc:\d+\] .*(could not find cuda drivers|failed call to cuInit)"
)


def filter_start_up_notices(text: str) -> str:
    """`text` without the lines that are TensorFlow's start-up notices."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _START_UP_NOTICES.search(line))


def import_keras_quietly() -> None:
    """Imports Keras (and so its backend) with the backend's start-up notices filtered out.

    Does nothing if Keras is imported already. Other output of the import goes to stderr as
    it would have, after the import; an exception propagates unchanged.
    """
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(filter_start_up_notices(capture.read().decode(errors="replace")))
            sys.stderr.flush()
