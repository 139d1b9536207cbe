"""`botfleet publish TARGET --repo ORG/NAME`: a bot's model from the store (or a folder) to the Hub."""

from __future__ import annotations

from botfleet import api
from botfleet.errors import UserError
from botfleet.hub import DEFAULT_ENDPOINT, HubRepo, PublishError, local_token
from botfleet.layout import Layout, folder
from botfleet.model_target import ModelTarget
from botfleet.publishing import publish_bot
from botfleet.storage import NotFound, Storage

ALLOW_ON_THE_COMMAND_LINE = "pass --allow-parrot"


def check_hub_arguments(repo: str, endpoint: str | None) -> None:
    """--repo and --endpoint by the schema's rules, as in a request; a UserError if wrong."""
    rules = api.SPEC_SCHEMA["properties"]["publish"]["properties"]["huggingFace"]["properties"]
    errors = api.validate(repo, rules["repo"], "--repo")  # the schema's rules, as for a request
    if endpoint is not None:
        errors += api.validate(endpoint, rules["endpoint"], "--endpoint")
    if errors:
        raise UserError("; ".join(errors))


def publish_target(
    storage: Storage, target: ModelTarget, repo: str, endpoint: str | None, private: bool, allow_parrot: bool
) -> str:
    """Publish; the line to print. Raises a UserError (one line) when nothing was published."""
    token = local_token()
    spec = target.request.spec if target.request else spec_next_to(storage, target)
    hub = HubRepo(repo, endpoint or DEFAULT_ENDPOINT, private)
    publication = publish_bot(
        spec,
        storage,
        hub,
        token,
        allow_parrot=allow_parrot,
        how_to_allow=ALLOW_ON_THE_COMMAND_LINE,
        model_uri=target.files_uri,
    )
    if not publication.published:
        raise PublishError(publication.reason, publication.error)
    return f"published {folder(target.files_uri)} to {publication.url} (commit {publication.commit})"


def spec_next_to(storage: Storage, target: ModelTarget) -> api.BotSpec:
    """The spec a model folder was trained for: request.json beside it, which the job writes."""
    uri = Layout(target.bot_uri).request
    try:
        return api.parse_spec(storage.read_json(uri))
    except NotFound:
        raise UserError(
            f"{folder(target.files_uri)}: no {uri.rsplit('/', 1)[1]} beside the model folder to render its card from"
            " (the job writes it): publish the BotRequest file, or the model folder where the job left it"
        ) from None
