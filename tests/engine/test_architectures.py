"""Every supported family against transformers: a tiny random model made from the family's config, saved as a
Hugging Face directory and as a GGUF file written as llama.cpp writes that arch, loaded by the engine, gives
transformers' float32 logits over a prompt and decode steps through the KV cache, and the same greedy tokens.
Prompt plus decode (84 tokens) is longer than the sliding window (16) and than one key window (64)."""

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import gguf
import pytest
import torch

from baobab.engine import weights
from baobab.engine.fixed_forward import FixedForward
from baobab.engine.model import Llama, Row
from baobab.engine.weights import WeightsError

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_models.py, beside this file
from tiny_models import (  # noqa: E402 - after the skip above
    DECODE,
    FAMILIES,
    PROMPT,
    READ_BACK,
    compare,
    engine_greedy,
    finish,
    relative,
    tiny,
    tiny_prompt,
    write_gguf,
)


def check_against(reference: Any, model: Llama, prompt: list[int] | None = None, steps: int = DECODE,
                  bound: float = 1e-4) -> float:
    """The engine's greedy run matches `reference` (a transformers model) token for token: at every position
    its logits are transformers' over the same tokens, so its argmax is the token transformers would pick."""
    error, tokens, picks = compare(reference, model, tiny_prompt() if prompt is None else prompt, steps)
    assert error < bound, error
    assert picks == tokens
    assert len(set(tokens)) > 1  # not one token repeated: the steps depend on what the cache holds
    return error


class Saved:
    """Each family's model and the Hugging Face directory it is saved in, made on first use."""

    def __init__(self, root: Path) -> None:
        self.root, self.made = root, dict[str, tuple[Any, Path]]()

    def __call__(self, family: str) -> tuple[Any, Path]:
        if family not in self.made:
            reference = tiny(family)
            reference.save_pretrained(self.root / family)
            self.made[family] = (reference, self.root / family)
        return self.made[family]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    return Saved(tmp_path_factory.mktemp("families"))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_hugging_face_directory_gives_transformers_logits(family: str, saved: Saved) -> None:
    reference, directory = saved(family)
    files = weights.load(directory)
    assert files.config.sliding_window == FAMILIES[family][1].get("sliding_window")
    model = Llama.from_weights(files, slots=2, max_len=128, spare_slots=1)
    print(f"{family}: max relative logit difference {check_against(reference, model):.2e}")


def test_an_image_and_text_gemma3_directory_gives_its_language_models_logits(saved: Saved, tmp_path: Path) -> None:
    """A multimodal Gemma 3 folder (model_type gemma3, a text_config, a vision tower beside the language model):
    the engine runs its language model and leaves the vision tower out."""
    text = saved("gemma3")[0].config
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                       image_token_index=300, boi_token_index=301, eoi_token_index=302)
    torch.manual_seed(0)
    reference = transformers.Gemma3ForConditionalGeneration(config).eval()
    reference.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gemma3"
    check_against(reference, Llama.from_weights(weights.load(tmp_path), max_len=256))


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "mistral"])
def test_fixed_shape_steps_keep_the_window_and_caps(family: str, saved: Saved) -> None:
    """The padded forward (what CUDA graphs replay) masks keys older than the window and caps scores too."""
    _, directory = saved(family)
    model = Llama.from_weights(weights.load(directory), slots=2, max_len=128, spare_slots=1)
    prompt = list(range(3, 3 + PROMPT))
    _, expected = engine_greedy(model, prompt)
    forward = FixedForward(model, graphs=False)
    got = [forward([prompt], [Row(1, 0)])[0]]  # slot 1: the row path's cache in slot 0 stays apart
    for position in range(PROMPT, PROMPT + DECODE):
        got.append(forward([[int(got[-1][-1].argmax())]], [Row(1, position)])[0])
    assert relative(torch.cat(got)[:-1], expected) < 1e-5


@pytest.mark.parametrize("family", [f for f, (_, _, arch) in FAMILIES.items() if arch])
def test_a_gguf_file_gives_transformers_logits(family: str, saved: Saved, tmp_path: Path) -> None:
    reference, _ = saved(family)
    path = tmp_path / f"{family}.gguf"
    write_gguf(reference, family, path)
    model = Llama.from_weights(weights.load(path), slots=2, max_len=128, spare_slots=1)
    print(f"{family} GGUF: max relative logit difference {check_against(reference, model):.2e}")
    if family in READ_BACK:  # transformers' reader agrees this is the model: the writer is right
        read = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name,
                                                                 dtype=torch.float32).eval()
        read.config._attn_implementation = "eager"
        print(f"{family} GGUF read by transformers: {check_against(read, model):.2e}")


def test_longrope_is_refused_by_name(saved: Saved, tmp_path: Path) -> None:
    """Phi-3.5 and Phi-4-mini scale RoPE by LongRoPE, which the engine does not do: it says so, not runs wrong."""
    _, directory = saved("phi3")
    shutil.copytree(directory, tmp_path / "phi")
    config = json.loads((directory / "config.json").read_text())
    config["rope_parameters"] |= {"rope_type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}
    (tmp_path / "phi" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"config\.json: RoPE scaling 'longrope' is not supported"):
        weights.load(tmp_path / "phi")


def test_an_unsupported_architecture_names_the_file_and_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(WeightsError, match=r"config\.json: model_type 'gpt2' is not supported \(supported: llama, "
                                           r"mistral, qwen2, qwen3, gemma2, gemma3_text, gemma3, phi3, smollm3\)"):
        weights.load(tmp_path)
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "falcon")
    finish(writer)
    with pytest.raises(WeightsError, match=r"m\.gguf: architecture 'falcon' is not supported \(supported: llama, "
                                           r"mistral, qwen2, qwen3, gemma2, gemma3, phi3, smollm3\)"):
        weights.load(tmp_path / "m.gguf")


@pytest.mark.timeout(900)
def test_gemma3_270m_q4_k_m_gives_transformers_logits(gemma_file: Path) -> None:
    """The real Gemma 3 270M (Q4_K_M GGUF, both sides dequantized to float32) over 560 token ids: a block of 40
    repeated, so that the model copies it with confidence, and long enough that the local layers' 512-key window
    slides. Ids, not text: no tokenizer is needed."""
    path = gemma_file
    model = Llama.from_weights(weights.load(path), max_len=1024)
    assert model.config.sliding_window == 512 and model.config.rope(5) == "global" and model.config.rope(4) == "local"
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                  dtype=torch.float32).eval()
    block = torch.randint(1000, 100_000, (40,), generator=torch.Generator().manual_seed(2)).tolist()
    error = check_against(reference, model, [2] + block * 13 + block[:19], steps=32, bound=1e-3)
    print(f"gemma-3-270m Q4_K_M: max relative logit difference {error:.2e}")
