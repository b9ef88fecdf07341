"""Reading images: every digit in an image, line by line, left to right, and an honest status.

An image goes through these modules, each with one job:

- `decode`: any source (a path, bytes, a PIL image, a NumPy array) -> a decoded image, safely;
- `page`: a photo of paper lying on something -> the sheet found and flattened upright;
- `ink`: which side is paper, uneven light removed (`light` on a flattened sheet), rules and
  specks dropped -> the ink mask;
- `lines`: the ink -> lines of writing, top to bottom;
- `segment`: each line -> one region per digit, left to right;
- `frame`: each region -> an MNIST-style 28x28 frame;
- `pipeline`: the model over the frames of many images at once -> `results.Reading`s;
- `formats`: readings -> the text, JSON lines and CSV that `predict` prints;
- `overview`: a reading drawn on its page, for `predict --save-preprocessed`.

A line recognizer (`recognize`, beside `frame` and the model) has its place beside them.

The status of a reading says what came of it:

- `ok`: every digit's calibrated confidence reached the threshold; `text` holds them all;
- `unsure`: something is there, but at least one mark is not confidently a digit (a letter, a
  scribble, an ambiguous stroke); `digit` and `text` are null, the probabilities stay visible;
- `no_digit`: blank paper, nothing but specks;
- `error`: the file is not a readable image, or holds far more marks than a number has.

The threshold is on calibrated probabilities (see `calibrate`): 0.6 means "this digit, at least
six times in ten, by the model's own honest account".

Importing this package imports no framework: Keras loads with the first model.
"""

from mnist_digits.reading.decode import ImageError
from mnist_digits.reading.frame import frame_image
from mnist_digits.reading.pipeline import Reader, read
from mnist_digits.reading.results import DigitReading, Reading

__all__ = ["DigitReading", "ImageError", "Reader", "Reading", "frame_image", "read"]
