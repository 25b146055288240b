"""What a GGUF file says about its model, read from the header alone: the weights (gigabytes, after
the header) are never read, so listing a folder of 70B models takes milliseconds.

The layout (GGUF v2 and v3): magic "GGUF", version u32, tensor count u64, metadata count u64, the
metadata as key/typed-value pairs, then one record per tensor (name, shape, type, offset).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from iml_core.errors import UserError

MAGIC = b"GGUF"

# Metadata value types, and the struct format of the fixed-size ones.
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

# llama.h's llama_ftype, the value of `general.file_type`: the quantization the file was made with.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}
# ggml_type, the type of one tensor: its name and its storage as (values per block, bytes per
# block). For files without `general.file_type`, the type that holds most of the parameters names
# the quantization; the storage gives the size the file must have to hold every tensor.
TENSOR_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
DEFAULT_ALIGNMENT = 32  # where the tensors' data begins, unless general.alignment says otherwise
# Metadata we keep; everything else (the vocabulary above all) is skipped without being decoded.
_WANTED = {"general.architecture", "general.name", "general.file_type", "general.alignment",
           "general.size_label", "tokenizer.chat_template"}
_MAX_STRING = 16 << 20  # no real key or template is this long: a larger length means a corrupt header


class GGUFError(UserError):
    """A file whose GGUF header cannot be read; the message says why."""


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    architecture: str
    name: str  # general.name, '' when absent
    parameters: int  # the sum of the tensors' element counts
    quantization: str
    context_length: int | None  # the context the model was trained for
    chat_template: bool
    # general.size_label, the size its makers name ("1.5B"), '' when absent: the tensors' sum counts a
    # tied embedding twice (1.8B for Qwen2.5-1.5B)
    size_label: str = ""


class _Reader:
    def __init__(self, file: BinaryIO, path: Path):
        self.file, self.path = file, path

    def take(self, size: int) -> bytes:
        data = self.file.read(size)
        if len(data) < size:
            raise GGUFError(f"{self.path} is truncated: it ends inside its GGUF header, after "
                            f"{self.file.tell():,} bytes; download or copy the file again")
        return data

    def scalar(self, kind: int):
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        size = self.scalar(10)
        if size > _MAX_STRING:
            raise GGUFError(f"{self.path} has a corrupt GGUF header (a string of {size} bytes)")
        return self.take(size).decode("utf-8", "replace")

    def skip_string(self) -> None:
        size = self.scalar(10)
        if size > _MAX_STRING:
            raise GGUFError(f"{self.path} has a corrupt GGUF header (a string of {size} bytes)")
        self.file.seek(size, 1)

    def value(self, kind: int, keep: bool):
        """The value when `keep`, else None after skipping it (arrays of numbers in one seek)."""
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == _STRING:
            if keep:
                return self.string()
            self.skip_string()
            return None
        if kind == _ARRAY:
            item, count = self.scalar(4), self.scalar(10)
            if item in _SCALARS:
                self.file.seek(count * struct.calcsize(_SCALARS[item]), 1)
            else:
                for _ in range(count):
                    self.value(item, False)
            return None
        raise GGUFError(f"{self.path} has a corrupt GGUF header (unknown value type {kind})")


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """The model's description from its header; GGUFError (with the reason) when it cannot be read."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            reader = _Reader(file, path)
            if file.read(4) != MAGIC:
                raise GGUFError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
            version = reader.scalar(4)
            if version not in (2, 3):
                raise GGUFError(f"{path} is GGUF version {version}; llama.cpp reads versions 2 and 3 "
                                "(convert the file again with a current llama.cpp)")
            tensors, entries = reader.scalar(10), reader.scalar(10)
            metadata = {}
            for _ in range(entries):
                key = reader.string()
                kind = reader.scalar(4)
                keep = key in _WANTED or key.endswith(".context_length")
                value = reader.value(kind, keep)
                if keep:
                    metadata[key] = value
            parameters, by_type, data_end = 0, {}, 0
            for _ in range(tensors):
                reader.skip_string()
                dims = reader.scalar(4)
                if dims > 8:
                    raise GGUFError(f"{path} has a corrupt GGUF header (a tensor of {dims} dimensions)")
                count = 1
                for _ in range(dims):
                    count *= reader.scalar(10)
                tensor_type, offset = reader.scalar(4), reader.scalar(10)
                parameters += count
                by_type[tensor_type] = by_type.get(tensor_type, 0) + count
                if tensor_type in TENSOR_TYPES:
                    _, per_block, block_bytes = TENSOR_TYPES[tensor_type]
                    data_end = max(data_end, offset + count // per_block * block_bytes)
            alignment = int(metadata.get("general.alignment") or DEFAULT_ALIGNMENT)
            needed = -(-file.tell() // alignment) * alignment + data_end
            size = path.stat().st_size
            if size < needed:
                raise GGUFError(f"{path} is truncated: it has {size:,} bytes and its tensors need {needed:,}; "
                                "download or copy the file again")
    except OSError as e:
        raise GGUFError(f"cannot read {path} ({e.strerror or e})") from None
    architecture = str(metadata.get("general.architecture") or "")
    if "general.file_type" in metadata:
        quantization = FILE_TYPES.get(metadata["general.file_type"], f"type {metadata['general.file_type']}")
    elif by_type:
        most = max(by_type, key=by_type.get)
        quantization = TENSOR_TYPES[most][0] if most in TENSOR_TYPES else f"type {most}"
    else:
        quantization = ""
    context = metadata.get(f"{architecture}.context_length")
    return GGUFHeader(version=version, architecture=architecture or "unknown",
                      name=str(metadata.get("general.name") or ""),
                      parameters=parameters, quantization=quantization,
                      context_length=int(context) if context is not None else None,
                      chat_template=bool(metadata.get("tokenizer.chat_template")),
                      size_label=str(metadata.get("general.size_label") or ""))


def parameter_text(count: int) -> str:
    """135M, 6.7B, 70B: how model sizes are said."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            value = count / size
            return f"{value:.0f}{unit}" if value >= 10 else f"{value:.1f}{unit}"
    return str(count)
