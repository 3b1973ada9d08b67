"""Write a Q8_0 copy of a GGUF file with gguf-py: every quantized tensor dequantized and
quantized again to Q8_0, float tensors and all metadata copied as they are.

No Q8_0 SmolLM2 file exists offline and llama.cpp's `llama-quantize` is not built here, so the
CPU benchmarks make one from the embedded Q4_1 file. Its weights are the Q4_1 values stored at
8 bits (not a Q8_0 of the original float weights): right for timing the Q8_0 path, not for
quality comparisons.

    python benchmarks/gguf_requantize.py OUT.gguf [--src IN.gguf]   # default: the embedded Q4_1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_throughput import gguf_location  # noqa: E402

TARGET = "Q8_0"


def requantize(src: str, dst: str) -> dict[str, int]:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFValueType as V

    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        # Pseudo-fields of the header, and the architecture the writer adds itself.
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == V.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    counts = {"requantized": 0, "copied": 0}
    target = getattr(Q, TARGET)
    for t in reader.tensors:
        if t.tensor_type in (Q.F32, Q.F16):
            writer.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
            counts["copied"] += 1
            continue
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        writer.add_tensor(t.name, gguf.quants.quantize(values, target), raw_dtype=target)
        counts["requantized"] += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--src", default=None, help="default: the embedded SmolLM2 Q4_1 GGUF")
    args = p.parse_args()
    src = args.src or str(Path(*gguf_location()))
    print(requantize(src, args.out), Path(args.out).stat().st_size)


if __name__ == "__main__":
    main()
