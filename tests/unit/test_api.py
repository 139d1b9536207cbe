"""The BotRequest schema is the one source of truth: the CRD, the dataclasses and the
examples are checked against it here."""

import dataclasses
import glob
import re
import typing
from pathlib import Path

import pytest
import yaml

from botfleet import api

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "charts/botfleet/crds/botrequests.botfleet.dev.yaml"


def minimal(**spec):
    body = {
        "handles": [{"handle": "dril", "source": {"archive": {"uri": "s3://uploads/dril.zip"}}}],
        "output": {"uri": "s3://bots/"},
    }
    body.update(spec)
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "x"}, "spec": body}


def test_committed_crd_is_generated_from_the_schema():
    assert CRD_FILE.read_text() == api.crd_yaml(), "run `make crd` to regenerate the CRD"


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _pairs():
    """(dataclass, schema) pairs, walking the typed model alongside SPEC_SCHEMA."""
    pending, seen = [(api.BotSpec, api.SPEC_SCHEMA)], []
    while pending:
        cls, schema = pending.pop()
        seen.append((cls, schema))
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            sub = schema["properties"].get(_camel(f.name))
            if sub is None:
                continue
            target = hints[f.name]
            args = [a for a in typing.get_args(target) if a is not type(None) and a is not Ellipsis]
            target = args[0] if args else target
            if dataclasses.is_dataclass(target):
                pending.append((target, sub["items"] if sub["type"] == "array" else sub))
    return seen


@pytest.mark.parametrize("cls, schema", _pairs(), ids=lambda v: getattr(v, "__name__", ""))
def test_dataclass_fields_match_schema_properties(cls, schema):
    assert {_camel(f.name) for f in dataclasses.fields(cls)} == set(schema["properties"])
    for f in dataclasses.fields(cls):
        prop = schema["properties"][_camel(f.name)]
        if f.default is not dataclasses.MISSING and "default" in prop:
            assert f.default == prop["default"], f"{cls.__name__}.{f.name}"
        if _camel(f.name) in schema.get("required", []):
            assert f.default is dataclasses.MISSING, f"{cls.__name__}.{f.name} is required"


@pytest.mark.parametrize("path", sorted(glob.glob(str(ROOT / "examples/**/*.yaml"), recursive=True)))
def test_examples_are_valid(path):
    for document in yaml.safe_load_all(Path(path).read_text()):
        if document and document.get("kind") == api.KIND:
            api.parse_request(document)


def test_defaults_are_the_reference_settings():
    spec = api.parse_request(minimal()).spec
    assert spec.data.max_posts == 3200
    assert spec.training.epochs == 4 and spec.training.learning_rate == 1.372e-4
    assert spec.training.block_size == 1024 and spec.training.zero_stage == 2
    assert api.WorkerDefaults().resolve(spec).training.resolved_precision() == "bf16"  # the reference trained on a GPU
    assert spec.handles[0].source.kind == "archive"
    assert spec.model_id == "dril" and spec.model_uri == "s3://bots/dril"


def test_model_id_is_lowercased_sorted_and_stripped():
    assert api.model_id(["@Dril", "gnomeszs", "S4M31P4N"]) == "dril-gnomeszs-s4m31p4n"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"handles": []}, "spec.handles: at least 1 item"),
        (
            {"handles": [{"handle": f"u{i}", "source": {"mastodon": {"instance": "https://m.x"}}} for i in range(4)]},
            "spec.handles: at most 3 items",
        ),
        (
            {"handles": [{"handle": "bad handle!", "source": {"bluesky": {}}}]},
            "spec.handles[0].handle: 'bad handle!' does not match",
        ),
        (
            {"handles": [{"handle": "a", "source": {}}]},
            "spec.handles[0].source: exactly one of archive, dataset, mastodon, bluesky, twitter, got 0",
        ),
        (
            {"handles": [{"handle": "a", "source": {"bluesky": {}, "mastodon": {"instance": "https://m.x"}}}]},
            "exactly one of",
        ),
        (
            {"handles": [{"handle": "a", "source": {"archive": {"uri": "http://x/y.zip"}}}]},
            "spec.handles[0].source.archive.uri: 'http://x/y.zip' does not match",
        ),
        (
            {"handles": [{"handle": "A", "source": {"bluesky": {}}}, {"handle": "@a", "source": {"bluesky": {}}}]},
            "spec.handles: handles must be distinct",
        ),
        ({"training": {"zeroStage": 4}}, "spec.training.zeroStage: must be at most 3"),
        ({"training": {"precision": "fp16"}}, "spec.training.precision: must be one of"),
        ({"training": {"learningRate": 0}}, "spec.training.learningRate: must be greater than 0"),
        ({"data": {"maxPosts": "many"}}, "spec.data.maxPosts: must be an integer, got str"),
        ({"output": {}}, "spec.output.uri: required"),
        ({"surprise": 1}, "spec.surprise: unknown field"),
    ],
)
def test_validation_errors_name_the_field_and_rule(change, message):
    with pytest.raises(api.ValidationError) as error:
        api.parse_request(minimal(**change))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_load_request_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: botfleet.dev/v1alpha1\nkind: BotRequest\nmetadata: {name: Bad_Name}\nspec: {}\n")
    with pytest.raises(api.ValidationError, match=re.escape(f"{path}: metadata.name: must be a DNS label")):
        api.load_request(str(path))
    with pytest.raises(api.ValidationError, match="cannot read"):
        api.load_request(str(tmp_path / "missing.yaml"))


def test_committed_api_docs_are_generated_from_the_schema():
    assert (ROOT / "docs/api.md").read_text() == api.spec_reference_markdown(), "run `make docs` to regenerate"


def test_demo_example_is_the_demo_request():
    from botfleet import demo

    assert yaml.safe_load((ROOT / "examples/demo.yaml").read_text()) == demo.REQUEST
    api.parse_request(demo.REQUEST)


# --------------------------------------------------------------------------- worker defaults


def test_worker_shape_has_no_schema_default():
    """The CRD must not default the worker shape, or the installation's defaults never apply."""
    spec = api.parse_request(minimal()).spec
    assert (spec.training.workers, spec.training.gpus_per_worker) == (None, None)
    assert (spec.resources.cpus_per_worker, spec.resources.memory_per_worker) == (None, None)
    for section, key in api.WORKER_FIELDS:
        node = api.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
            section
        ]
        assert "default" not in node["properties"][key], f"spec.{section}.{key}"


def test_worker_defaults_fill_only_what_a_request_leaves_out():
    defaults = api.WorkerDefaults(workers=3, gpus_per_worker=2, cpus_per_worker=6, memory_per_worker="24Gi")
    document = minimal(training={"workers": 1, "epochs": 2}, resources={"memoryPerWorker": "8Gi"})["spec"]
    filled = defaults.fill(document)
    assert filled["training"] == {"workers": 1, "gpusPerWorker": 2, "epochs": 2}
    assert filled["resources"] == {"cpusPerWorker": 6, "memoryPerWorker": "8Gi"}
    assert "resources" in filled and document["resources"] == {"memoryPerWorker": "8Gi"}  # the input is untouched
    typed = defaults.resolve(api.parse_spec(document))
    assert typed == api.parse_spec(filled)
    assert (typed.training.workers, typed.training.gpus_per_worker, typed.training.epochs) == (1, 2, 2)
    assert defaults.resolve(typed) == typed  # resolving twice changes nothing
    assert api.WorkerDefaults().fill(minimal()["spec"])["training"] == {"workers": 1, "gpusPerWorker": 1}


def test_unresolved_precision_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="gpus_per_worker is not resolved"):
        api.TrainingSpec().resolved_precision()
    assert api.TrainingSpec(gpus_per_worker=0).resolved_precision() == "fp32"
    assert api.TrainingSpec(gpus_per_worker=1).resolved_precision() == "bf16"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"workers": 0}, r"spec.training.workers \(default\): must be at least 1"),
        ({"gpus_per_worker": 9}, r"spec.training.gpusPerWorker \(default\): must be at most 8"),
        ({"memory_per_worker": "lots"}, r"spec.resources.memoryPerWorker \(default\): 'lots' does not match"),
    ],
)
def test_worker_defaults_obey_the_request_schema(change, message):
    with pytest.raises(api.ValidationError, match=message):
        api.WorkerDefaults(**change)
