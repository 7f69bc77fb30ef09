"""Reader for CIFAR-10 "python version" batches, through a restricted unpickler.

The batches are pickles, and unpickling runs whatever callable a file names. The reader admits
only the globals a CIFAR batch legitimately holds (NumPy's array rebuild function, ``ndarray``
and ``dtype``); dicts, lists, bytes and ints come from pickle opcodes that name no global. Any
other global (``os.system``, ``builtins.eval``, ...) stops the load with a :class:`DataError`
before it is called. Files may be plain or gzip-compressed, whatever their names.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from deepshrink.data.idx import read_maybe_gzip
from deepshrink.errors import DataError

#: CIFAR-10 class names, used when ``batches.meta`` is absent.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (3, 32, 32)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # NumPy's ndarray pickles through its `_reconstruct` function, which lives in
    # numpy.core.multiarray (NumPy 1) or numpy._core.multiarray (NumPy 2). Take it from
    # ndarray.__reduce__ so no deprecated module is imported, and map both names to it.
    reconstruct = np.empty(0).__reduce__()[0]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only NumPy array globals; anything else is a DataError.

    >>> import io, pickle
    >>> blob = pickle.dumps({"labels": [1, 2]}, protocol=2)
    >>> RestrictedUnpickler(io.BytesIO(blob)).load()
    {'labels': [1, 2]}
    """

    def __init__(self, file: Any, *, source: str = "<stream>") -> None:
        super().__init__(file, encoding="bytes")
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"the CIFAR reader refuses to load global {module}.{name} from file "
                f"{self.source}: a CIFAR-10 batch needs only NumPy's ndarray, dtype and "
                "_reconstruct, so this file is not a genuine batch (or was re-pickled in another "
                "format). Do not unpickle it elsewhere; fetch the official files instead"
            ) from None


def unpickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle a (possibly gzipped) file with :class:`RestrictedUnpickler`."""
    path = Path(path)
    try:
        content = read_maybe_gzip(path)
        return RestrictedUnpickler(io.BytesIO(content), source=str(path)).load()
    except DataError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is truncated or corrupted ({exc}); fetch it again") from exc
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path} is not a valid CIFAR pickle: {exc}") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def read_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one CIFAR-10 batch file.

    >>> import pickle, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data_batch_1"
    >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 5]}
    >>> _ = path.write_bytes(pickle.dumps(batch, protocol=4))
    >>> images, labels = read_batch(path)
    >>> images.shape, labels.tolist()
    ((2, 3, 32, 32), [3, 5])
    """
    path = Path(path)
    content = _text_keys(unpickle(path), path)
    if "data" not in content or "labels" not in content:
        raise DataError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    data, labels = content["data"], np.asarray(content["labels"])
    size = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array (N, {size}), got {_describe(data)}")
    if data.shape[1] != size or labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: expected data (N, {size}) and N labels, got data {data.shape} "
            f"and {labels.shape[0] if labels.ndim else 0} labels"
        )
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be integers 0–9")
    images = np.ascontiguousarray(data.reshape(-1, *IMAGE_SHAPE))
    return images, labels.astype(np.int64)


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """The ``label_names`` of a ``batches.meta`` file."""
    path = Path(path)
    content = _text_keys(unpickle(path), path)
    names = content.get("label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{path}: 'label_names' must list {len(CIFAR10_CLASSES)} names")
    return [name.decode("latin1") if isinstance(name, bytes) else str(name) for name in names]


def _text_keys(content: Any, path: Path) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a dict in a CIFAR-10 file, got {_describe(content)}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in content.items()}


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
