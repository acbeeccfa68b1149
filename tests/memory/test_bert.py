"""The torch BERT embedder gives sentence-transformers' vectors for all-MiniLM-L6-v2, without that package."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from baobab.memory import LocalEmbedder
from baobab.memory.bert import BertConfig
from baobab.memory.embedders import packaged_model

TEXTS = ["a note", "",
         "The deploy on Friday failed again: the disk of the build server filled with docker images.",
         "Ünïcödé, 東京 and an emoji 🙂 in CAPS", "word " * 400]  # the last is cut at 256 tokens


def test_vectors_match_sentence_transformers(minilm: LocalEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(packaged_model()), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    ours = minilm.embed(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5


def test_a_text_gets_the_same_vector_alone_or_in_a_padded_batch(minilm: LocalEmbedder) -> None:
    alone = minilm.embed(TEXTS[:1])
    assert np.abs(alone[0] - minilm.embed(TEXTS)[0]).max() < 1e-6
    assert minilm.embed([]).shape == (0, 384)


def test_embedding_imports_neither_sentence_transformers_nor_transformers() -> None:
    code = ("import sys; from baobab.memory import LocalEmbedder; LocalEmbedder().embed(['x']); "
            "print([m for m in ('sentence_transformers', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_folder_that_is_not_bert_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "roberta"}')
    with pytest.raises(ValueError, match=r"config\.json: expected a BERT model .* got model_type 'roberta'"):
        BertConfig.read(tmp_path)
