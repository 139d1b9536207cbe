"""Which model a command means: ``TARGET`` as `botfleet publish` (and `generate`) take it.

A TARGET is a BotRequest file (its model is the one in the object store, under
``<output>/<model-id>/model``), an ``s3://`` or ``file://`` model folder, or a local
folder. :func:`resolve_model_target` says which, and where the folder is; :func:`target_storage`
opens the object store that reaches it (the configured one, else the embedded one, as
`botfleet run` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from botfleet import api
from botfleet.errors import UserError
from botfleet.layout import Layout
from botfleet.storage import S3Config, Storage, file_uri

REQUEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ModelTarget:
    model_uri: str  # the model folder, s3:// or file://, without a trailing '/'
    request: api.BotRequest | None = None  # when TARGET named a request file

    @property
    def bot_uri(self) -> str:
        """``<output>/<model-id>``: where the bot's other files are when the folder is in
        botfleet's layout (its ``model/``)."""
        return self.model_uri.rsplit("/", 1)[0]


def resolve_model_target(text: str) -> ModelTarget:
    """TARGET as typed: a request file, an s3:// or file:// folder, or a local folder."""
    if text.startswith(("s3://", "file://")):
        return ModelTarget(text.rstrip("/"))
    if text.endswith(REQUEST_SUFFIXES) and os.path.isfile(text):
        request = api.load_request(text)
        return ModelTarget(Layout(request.spec.model_uri).model, request)
    if os.path.isdir(text):
        return ModelTarget(file_uri(os.path.abspath(text)).rstrip("/"))
    raise UserError(
        f"{text}: no such request file or folder (TARGET is a BotRequest .yaml, an s3:// or file:// model folder,"
        " or a local model folder)"
    )


def target_storage(target: ModelTarget) -> Storage:
    """The object store the target's folder is in: the configured one, else (for an s3://
    folder) the embedded one that `botfleet run` used."""
    config = S3Config.from_env()
    if config is not None or not target.model_uri.startswith("s3://"):
        return Storage(config)
    from botfleet.embedded_s3 import local_default_storage

    storage, _ = local_default_storage()
    return storage
