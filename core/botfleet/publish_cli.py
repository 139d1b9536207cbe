"""`botfleet publish TARGET --repo ORG/NAME`: a bot's model from the store (or a folder) to the Hub."""

from __future__ import annotations

from botfleet import api
from botfleet.errors import UserError
from botfleet.hub import DEFAULT_ENDPOINT, HubRepo, PublishError, local_token
from botfleet.layout import Layout, folder
from botfleet.model_target import ModelTarget, resolve_model_target, target_storage
from botfleet.publishing import publish_bot
from botfleet.storage import NotFound, Storage

ALLOW_ON_THE_COMMAND_LINE = "pass --allow-parrot"


def publish_target(target_text: str, repo: str, endpoint: str | None, private: bool, allow_parrot: bool) -> str:
    """Publish; the line to print. Raises a UserError (one line) when nothing was published."""
    rules = api.SPEC_SCHEMA["properties"]["publish"]["properties"]["huggingFace"]["properties"]
    errors = api.validate(repo, rules["repo"], "--repo")  # the schema's rules, as for a request
    if endpoint is not None:
        errors += api.validate(endpoint, rules["endpoint"], "--endpoint")
    if errors:
        raise UserError("; ".join(errors))
    token = local_token()
    target = resolve_model_target(target_text)
    storage = target_storage(target)
    spec = target.request.spec if target.request else spec_next_to(storage, target)
    hub = HubRepo(repo, endpoint or DEFAULT_ENDPOINT, private)
    publication = publish_bot(
        spec,
        storage,
        hub,
        token,
        allow_parrot=allow_parrot,
        how_to_allow=ALLOW_ON_THE_COMMAND_LINE,
        model_uri=target.model_uri,
    )
    if not publication.published:
        raise PublishError(publication.reason, publication.error)
    return f"published {folder(target.model_uri)} to {publication.url} (commit {publication.commit})"


def spec_next_to(storage: Storage, target: ModelTarget) -> api.BotSpec:
    """The spec a model folder was trained for: request.json beside it, which the job writes."""
    uri = Layout(target.bot_uri).request
    try:
        return api.parse_spec(storage.read_json(uri))
    except NotFound:
        raise UserError(
            f"{folder(target.model_uri)}: no {uri.rsplit('/', 1)[1]} beside the model folder to render its card from"
            " (the job writes it): publish the BotRequest file, or the model folder where the job left it"
        ) from None
