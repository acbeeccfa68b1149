"""A dataset on disk: one JSONL file per kind of record, and a manifest of counts, sources and the split.

    steps.jsonl       {"messages": [system, user, assistant]}: a successful path's move at one state
    recoveries.jsonl  {"messages": [...]}: a failed prefix ("weight": 0), a reflection, the corrected path
    pairs.jsonl       {"prompt": [...], "chosen": [assistant], "rejected": [assistant]}
    values.jsonl      {"prompt": [judge messages], "value", "success_rate", "visits", "done"}
    manifest.json     format, counts, files (name, sha256), sources, split, held-out runs skipped, options

The manifest holds no time: the same searches give the same bytes.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baobab.train.errors import DatasetError
from baobab.train.jsonl import read_jsonl, write_jsonl

KINDS = ("steps", "recoveries", "pairs", "values")
FORMAT = "baobab.train.dataset/1"
MANIFEST = "manifest.json"


@dataclass
class Dataset:
    """Records by kind (see KINDS), the sources they came from, held-out runs left out, the split and options.

    >>> ds = Dataset(); ds.records["steps"].append({"messages": []}); ds.counts()["steps"]
    1
    """

    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    sources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    split: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Records per kind."""
        return {kind: len(self.records.get(kind, [])) for kind in KINDS}

    def manifest(self, hashes: dict[str, str] | None = None) -> dict[str, Any]:
        """What `manifest.json` says (`hashes`: each kind's file sha256, once written)."""
        files = {kind: {"name": f"{kind}.jsonl", **({"sha256": hashes[kind]} if hashes else {})} for kind in KINDS}
        return {"format": FORMAT, "counts": self.counts(), "files": files, "sources": self.sources,
                "split": self.split, "skipped_heldout": self.skipped, "options": self.options}

    def write(self, directory: str | Path) -> Path:
        """Write the files and the manifest into `directory` (made if missing); the manifest's path.

        >>> build_dataset(["g24-1"], store=url, prompt=fmt, split=split).write("data/g24")  # doctest: +SKIP
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        hashes = {kind: write_jsonl(folder / f"{kind}.jsonl", self.records.get(kind, [])) for kind in KINDS}
        path = folder / MANIFEST
        path.write_text(json.dumps(self.manifest(hashes), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: str | Path) -> "Dataset":
        """The dataset `write` left in `directory`; files that do not match the manifest are an error.

        >>> Dataset.read("data/g24").counts()  # doctest: +SKIP
        """
        path = Path(directory) / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: expected a dataset manifest (JSON) written by Dataset.write: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else manifest
            raise DatasetError(f"{path}: field 'format' should be {FORMAT!r}, got {got!r}")
        missing = [f for f in ("files", "sources", "skipped_heldout", "split", "options") if f not in manifest]
        files = manifest.get("files", {})
        missing += [f"files.{k}" for k in KINDS if not isinstance(files.get(k), dict) or "name" not in files[k]]
        if missing:
            raise DatasetError(f"{path}: fields {missing} are missing (expected a manifest written by Dataset.write)")
        records = {}
        for kind in KINDS:
            file = Path(directory) / files[kind]["name"]
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            if digest != files[kind].get("sha256", digest):
                raise DatasetError(f"{file}: its sha256 is not the one {path} records: the file changed after it "
                                   "was written")
            records[kind] = read_jsonl(file)
        return cls(records, manifest["sources"], manifest["skipped_heldout"], manifest["split"], manifest["options"])
