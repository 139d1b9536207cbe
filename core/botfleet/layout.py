"""Where one bot's files are: everything under ``<output.uri>/<model-id>`` (``spec.model_uri``).

The data stage, the trainer, the job and the operator all name these paths through
:class:`Layout`, so a file one of them writes is where the others look. Folders are named
without a trailing slash (object-store prefixes); :func:`folder` adds one where a person
reads the name (the status, the model card).
"""

from __future__ import annotations

from dataclasses import dataclass


def folder(uri: str) -> str:
    """A folder's URI as shown to people: with one trailing slash."""
    return uri.rstrip("/") + "/"


@dataclass(frozen=True)
class Layout:
    model_uri: str

    # ---- the operator: which BotRequest (namespace, name, uid) writes this folder

    @property
    def owner(self) -> str:
        return f"{self.model_uri}/owner.json"

    # ---- the data stage: data/stats.json is written last (its presence means complete)

    @property
    def data(self) -> str:
        return f"{self.model_uri}/data"

    def raw(self, handle: str) -> str:
        """Every post fetched for one handle (its normalized name), as JSON lines."""
        return f"{self.data}/raw/{handle}.jsonl"

    @property
    def train_txt(self) -> str:
        return f"{self.data}/train.txt"

    @property
    def valid_txt(self) -> str:
        return f"{self.data}/valid.txt"

    @property
    def stats(self) -> str:
        return f"{self.data}/stats.json"

    # ---- training: model/training.json is written last (its presence means complete)

    @property
    def progress(self) -> str:
        return f"{self.model_uri}/progress.json"

    @property
    def checkpoints(self) -> str:
        return f"{self.model_uri}/checkpoints"

    @property
    def model(self) -> str:
        return f"{self.model_uri}/model"

    @property
    def model_config(self) -> str:
        return f"{self.model}/config.json"

    @property
    def training(self) -> str:
        return f"{self.model}/training.json"

    @property
    def samples(self) -> str:
        return f"{self.model}/samples.json"

    @property
    def loss_history(self) -> str:
        """The losses step by step (written before training.json)."""
        return f"{self.model}/loss_history.json"

    # ---- publishing: result.json is the job's verdict, written last

    @property
    def card(self) -> str:
        return f"{self.model}/README.md"

    @property
    def thumbnail(self) -> str:
        return f"{self.model}/predictions.png"

    @property
    def loss_curve(self) -> str:
        return f"{self.model}/loss.png"

    @property
    def tracking(self) -> str:
        return f"{self.model_uri}/tracking"

    @property
    def result(self) -> str:
        return f"{self.model_uri}/result.json"

    # ---- the Hub: publish.json says what the last publish did (outside model/: not uploaded)

    @property
    def publication(self) -> str:
        return f"{self.model_uri}/publish.json"

    @property
    def request(self) -> str:
        """The spec the job ran (request.json): what republishing a model folder renders its card from."""
        return f"{self.model_uri}/request.json"

    # ---- versions: each successful training is one; the latest is model/, earlier ones here

    @property
    def versions(self) -> str:
        return f"{self.model_uri}/versions"

    def version(self, number: int) -> str:
        """An earlier version's copy of model/ (its training.json is copied last)."""
        return f"{self.versions}/v{number}"

    @property
    def history(self) -> str:
        return f"{self.model_uri}/history.json"

    # ---- the job's full log (Ray's worker lines included): one file per run, kept after failures

    @property
    def logs(self) -> str:
        return f"{self.model_uri}/logs"

    def job_log(self, started: str) -> str:
        """The log of the run that started at ``started`` (RFC 3339): ``logs/job-<UTC time>.log``."""
        stamp = "".join(c for c in started if c.isalnum())
        return f"{self.logs}/job-{stamp}.log"
