"""The feature dicts in vlprep.core.schema are what `datasets` itself reads and derives: same features back,
same Arrow schema, same metadata. The stages build schemas without importing datasets."""
import json
import subprocess
import sys

import datasets
import pytest

from vlprep.core.schema import HF_BYTES_FEATURES, HF_BYTES_SCHEMA, TRL_FEATURES, TRL_SCHEMA


@pytest.mark.parametrize("features, schema", [(HF_BYTES_FEATURES, HF_BYTES_SCHEMA), (TRL_FEATURES, TRL_SCHEMA)])
def test_schema_is_what_datasets_derives(features, schema):
    theirs = datasets.Features.from_dict(features)
    assert theirs.to_dict() == features
    assert theirs.arrow_schema.remove_metadata() == schema.remove_metadata()
    assert json.loads(theirs.arrow_schema.metadata[b"huggingface"]) == json.loads(schema.metadata[b"huggingface"])


def test_image_decode_flags_survive():
    assert datasets.Features.from_dict(HF_BYTES_FEATURES)["images"].feature.decode is False
    assert datasets.Features.from_dict(TRL_FEATURES)["images"].feature.decode is True


def test_stage_modules_do_not_import_datasets():
    code = "import sys, vlprep.ingest.hf_bytes, vlprep.targets.verl, vlprep.targets.trl, vlprep.core.writers; print('datasets' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
