"""The demo bot `make demo` builds: everything it needs is made locally.

Its corpus is the 283 programmer one-liners the pyjokes package ships (a real,
tweet-sized corpus; no registry ships real tweets), and its base model a small GPT-2
with random weights and the real GPT-2 tokenizer, because no pretrained weights can be
downloaded here. Both go into the object store first, then the request runs like any
other. examples/demo.yaml is this request, checked by the tests.
"""

from __future__ import annotations

import json

DATASET_URI = "s3://bots/demo/pyjokes.jsonl"
BASE_MODEL_URI = "s3://bots/base-models/gpt2-demo"
BASE_MODEL_PRESET = "tiny"

REQUEST = {
    "apiVersion": "botfleet.dev/v1alpha1",
    "kind": "BotRequest",
    "metadata": {"name": "pyjokes"},
    "spec": {
        "handles": [
            {
                "handle": "pyjokes",
                "displayName": "Python jokes",
                "source": {"dataset": {"uri": DATASET_URI, "format": "jsonl"}},
            }
        ],
        "training": {
            "baseModel": BASE_MODEL_URI,
            "epochs": 8,
            "learningRate": 2e-3,
            "blockSize": 128,
            "batchSizePerWorker": 2,
            "gpusPerWorker": 0,
            "precision": "fp32",
            "zeroStage": 2,
        },
        "tracking": {"wandb": {"mode": "offline"}},
        "output": {"uri": "s3://bots/"},
    },
}


def corpus_jsonl() -> bytes:
    import pyjokes

    jokes = pyjokes.get_jokes(language="en", category="all")
    return "".join(json.dumps({"id": str(i), "text": joke}) + "\n" for i, joke in enumerate(jokes)).encode()
