"""Every GGUF type the gguf package dequantizes loads as exactly what it dequantizes to; a type it cannot is named;
loading converts tensor by tensor, so the peak memory stays near the loaded weights'."""

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

from baobab.engine import weights
from baobab.engine.model import Linear
from baobab.engine.weights import WeightsError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_models.py, beside this file
from tiny_models import finish

Kind = GGMLQuantizationType
QUANTIZABLE = [Kind.F32, Kind.F16, Kind.BF16, Kind.Q4_0, Kind.Q4_1, Kind.Q5_0, Kind.Q5_1, Kind.Q8_0, Kind.TQ1_0,
               Kind.TQ2_0, Kind.MXFP4]  # what gguf 0.19 quantizes
DEQUANTIZE_ONLY = [Kind.Q2_K, Kind.Q3_K, Kind.Q4_K, Kind.Q5_K, Kind.Q6_K, Kind.IQ1_S, Kind.IQ1_M, Kind.IQ2_XXS,
                   Kind.IQ2_XS, Kind.IQ2_S, Kind.IQ3_XXS, Kind.IQ3_S, Kind.IQ4_NL, Kind.IQ4_XS, Kind.NVFP4]
DIM, HIDDEN, HEADS, VOCAB = 256, 512, 2, 64  # rows of 256: the K and IQ types' block
LINEARS = {"attn_q": (DIM, DIM), "attn_k": (DIM, DIM), "attn_v": (DIM, DIM), "attn_output": (DIM, DIM),
           "ffn_gate": (HIDDEN, DIM), "ffn_up": (HIDDEN, DIM), "ffn_down": (DIM, HIDDEN)}
HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
      "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
      "ffn_down": "mlp.down_proj"}


def stored(kind: GGMLQuantizationType, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A weight of `shape` as the file stores it in `kind`: quantized by gguf where it can, else random blocks."""
    if kind in QUANTIZABLE:
        return quantize(rng.standard_normal(shape).astype(np.float32) * 0.05, kind)
    block, size = GGML_QUANT_SIZES[kind]
    return rng.integers(0, 256, (shape[0], shape[1] // block * size), dtype=np.uint8)


def write_llama(path: Path, kind: GGMLQuantizationType, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A one-block llama file whose projections are stored in `kind`; returns what gguf dequantizes each to."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(VOCAB)])
    writer.add_token_merges([])
    for add, value in ((writer.add_context_length, 64), (writer.add_embedding_length, DIM),
                       (writer.add_block_count, 1), (writer.add_feed_forward_length, HIDDEN),
                       (writer.add_head_count, HEADS), (writer.add_head_count_kv, HEADS)):
        add(value)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tensor("token_embd.weight", rng.standard_normal((VOCAB, DIM)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(DIM, np.float32))
    expected = {}
    for name, shape in LINEARS.items():
        data = stored(kind, shape, rng)
        writer.add_tensor(f"blk.0.{name}.weight", data, raw_dtype=kind)
        expected[name] = dequantize(data, kind)
    finish(writer)
    return expected


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # random blocks: NaN scales
@pytest.mark.parametrize("kind", QUANTIZABLE + DEQUANTIZE_ONLY, ids=lambda kind: kind.name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_dequantizable_type_loads_as_gguf_dequantizes_it(tmp_path: Path, kind: GGMLQuantizationType,
                                                                dtype: torch.dtype) -> None:
    """Projections equal gguf's dequantization cast to `dtype`, bit for bit (random blocks may hold NaN scales:
    NaN where gguf has NaN); q and k rows come back permuted to Hugging Face's layout, the same values per column."""
    expected = write_llama(tmp_path / f"{kind.name}.gguf", kind, np.random.default_rng(kind.value))
    tensors = weights.load(tmp_path / f"{kind.name}.gguf", dtype).tensors
    for name, array in expected.items():
        ours, reference = tensors[f"model.layers.0.{HF[name]}.weight"], torch.from_numpy(array).to(dtype)
        assert ours.dtype == dtype and ours.shape == reference.shape
        if name in ("attn_q", "attn_k"):
            ours, reference = ours.sort(0).values, reference.sort(0).values
        torch.testing.assert_close(ours, reference, rtol=0, atol=0, equal_nan=True)


def test_the_real_q4_k_m_files_tensors_convert_exactly(gemma_file: Path) -> None:
    """Gemma 3 270M Q4_K_M holds Q4_K, Q6_K, Q5_0, Q8_0 and F32 tensors: each type's first equals gguf's own."""
    firsts = {}
    for tensor in gguf.GGUFReader(gemma_file).tensors:
        firsts.setdefault(tensor.tensor_type, tensor)
    assert {Kind.Q4_K, Kind.Q6_K, Kind.Q5_0, Kind.Q8_0, Kind.F32} <= set(firsts)
    for kind, tensor in firsts.items():
        reference = torch.from_numpy(dequantize(tensor.data, kind).copy())
        assert torch.equal(weights.gguf_tensor(tensor, torch.float32, gemma_file), reference), kind.name
        assert torch.equal(weights.gguf_tensor(tensor, torch.bfloat16, gemma_file), reference.bfloat16()), kind.name


def test_a_type_gguf_cannot_dequantize_names_the_file_tensor_and_the_supported_types(tmp_path: Path) -> None:
    path = tmp_path / "q8_1.gguf"
    rng = np.random.default_rng(0)
    write_llama(path, Kind.Q8_0, rng)
    reader = gguf.GGUFReader(path)
    writer = gguf.GGUFWriter(tmp_path / "odd.gguf", "llama")  # the same file with one tensor in Q8_1
    for key, field in reader.fields.items():
        if not key.startswith(("GGUF.", "general.architecture")):
            value_type = field.types[0]
            sub = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), value_type, sub_type=sub)
    for tensor in reader.tensors:
        if tensor.name == "blk.0.ffn_up.weight":
            block, size = GGML_QUANT_SIZES[Kind.Q8_1]
            writer.add_tensor(tensor.name, np.zeros((HIDDEN, DIM // block * size), np.uint8), raw_dtype=Kind.Q8_1)
        else:
            writer.add_tensor(tensor.name, np.array(tensor.data), raw_dtype=tensor.tensor_type)
    finish(writer)
    with pytest.raises(WeightsError, match=r"odd\.gguf: tensor 'blk\.0\.ffn_up\.weight' is Q8_1, which the installed "
                                           r"gguf package cannot dequantize \(it can: F32, F16, Q4_0, .*Q6_K.*IQ4_XS"):
        weights.load(tmp_path / "odd.gguf")


def peak_memory(code: str) -> dict[str, float]:
    """Run `code` in a fresh Python after `baobab.engine.weights` is imported; it sets `loaded` (tensors) and
    `mapped` (bytes of the file it maps). Returns its bytes over the RSS before it ran, at the peak (VmHWM: getrusage's
    peak survives exec, so a child reports a big parent's) and at the end, the loaded tensors' bytes, the largest
    one's in float32, and its seconds."""
    script = f"""
import json, time
import torch
from baobab.engine import weights

def status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024

before, start = status("VmRSS"), time.perf_counter()
{code}
seconds = time.perf_counter() - start
sizes = [t.numel() * t.element_size() for t in loaded.values()]
print(json.dumps({{"peak": status("VmHWM") - before, "end": status("VmRSS") - before, "weights": sum(sizes),
                  "largest_f32": max(t.numel() for t in loaded.values()) * 4, "mapped": mapped,
                  "seconds": seconds}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    print(result)
    return result


def within_bound(m: dict[str, float], overhead: float) -> bool:
    """Peak under the final weights + 1.5 x the largest tensor in float32 + the mapped file + `overhead`."""
    return m["peak"] < m["weights"] + 1.5 * m["largest_f32"] + m["mapped"] + overhead


def test_loading_the_default_model_peaks_near_its_weights() -> None:
    path = weights.resolve(weights.DEFAULT_MODEL)
    measured = peak_memory(f"loaded = weights.load(weights.Path({str(path)!r})).tensors\n"
                           f"mapped = weights.Path({str(path)!r}).stat().st_size")
    assert within_bound(measured, overhead=64 * 2**20)


def test_converting_the_gemma_file_tensor_by_tensor_peaks_near_its_weights(gemma_file: Path) -> None:
    """weights.load on Gemma 3 270M (262k-token vocabulary, 671 MB float32 token table), in float32 and bfloat16:
    each quantized tensor's float32 copy is dropped as soon as it is cast."""
    for dtype in ("float32", "bfloat16"):
        measured = peak_memory(f"loaded = weights.load(weights.Path({str(gemma_file)!r}), torch.{dtype}).tensors\n"
                               f"mapped = {gemma_file.stat().st_size}")
        assert within_bound(measured, overhead=320 * 2**20), dtype  # the vocabulary's Python strings and floats


def test_int4_storage_rebuilds_q4_k_levels_and_requantizes_q6_k(gemma_file: Path) -> None:
    """Where the engine keeps projections in 4 bits ("int4"), a Q4_K tensor's groups of 32 (a scale and a minimum
    each) keep their own 16 levels, to bfloat16's rounding (under 1% of the group's largest weight; 6.7% when the
    levels were refitted to each group's range); a Q6_K tensor's 64 levels are requantized to 16 per group."""
    reader = gguf.GGUFReader(gemma_file)
    errors: dict[GGMLQuantizationType, float] = {}
    for kind in (Kind.Q4_K, Kind.Q6_K):
        tensor = next(t for t in reader.tensors if t.tensor_type == kind)
        weight = weights.gguf_tensor(tensor, torch.float32, gemma_file)
        rebuilt = Linear(weight, None, "int4")(torch.eye(weight.shape[1])).float().T  # the stored weights, by column
        spread = weight.view(weight.shape[0], -1, 32).abs().amax(-1, keepdim=True)
        errors[kind] = ((rebuilt - weight).view_as(spread.expand(-1, -1, 32)) / spread).abs().max().item()
    assert errors[Kind.Q4_K] < 2 ** -6
    assert errors[Kind.Q6_K] > 2 ** -5

