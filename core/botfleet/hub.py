"""Publishing a bot's model folder to a Hugging Face Hub repository, in one commit.

Torch-free (``huggingface_hub`` only, imported when a publish happens), because three
places publish: the job after training, the operator when it retries a failed publish
(no training again), and `botfleet publish`. A failure is a :class:`PublishError` with the
:class:`~botfleet.reasons.Reason` the status shows; the token is never part of a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from botfleet.errors import UserError, one_line
from botfleet.reasons import Reason

DEFAULT_ENDPOINT = "https://huggingface.co"
HF_TOKEN_ENV = "HF_TOKEN"  # the local CLI's token, as huggingface_hub's own tools read it
CARD = "README.md"
REDACTED = "<token>"


class PublishError(UserError):
    """Publishing failed; ``reason`` says why in one word, the message in one line."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class HubRepo:
    repo: str  # ORG/NAME
    endpoint: str = DEFAULT_ENDPOINT
    private: bool = False

    @property
    def url(self) -> str:
        """The repository's page."""
        return f"{self.endpoint.rstrip('/')}/{self.repo}"

    @property
    def namespace(self) -> str:
        return self.repo.split("/", 1)[0]


@dataclass(frozen=True)
class Commit:
    url: str  # the repository's page
    commit: str  # the commit's id


def redact(text: str, token: str | None) -> str:
    """``text`` without the token (an error may quote what it was given)."""
    return text.replace(token, REDACTED) if token else text


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(path in the repository, local file) for every file under ``folder``, sorted."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    return sorted((path.relative_to(folder).as_posix(), path) for path in files)


def publish_folder(folder: Path, card: str, hub: HubRepo, token: str, message: str) -> Commit:
    """Create ``hub.repo`` if needed and commit every file of ``folder`` in one commit, with
    ``card`` as its README.md (the card that points at the Hub; the folder's own stays)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    if not token:
        raise PublishError(Reason.PUBLISH_FAILED, f"no Hub token to publish {hub.repo} with")
    api = HfApi(endpoint=hub.endpoint.rstrip("/"), token=token, library_name="botfleet")
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
        for name, path in folder_files(folder)
        if name != CARD
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode()))
    refused = None
    try:
        refused = create_repo(api, hub)
        info = api.create_commit(hub.repo, operations, commit_message=message)
    except Exception as error:  # noqa: BLE001 - every failure becomes one reason and line
        # No repository to commit to after a refused creation: the refusal is the news.
        reported = refused if refused is not None and http_status(error) == 404 else error
        raise hub_failure(reported, hub, token) from None
    return Commit(url=hub.url, commit=info.oid)


def create_repo(api, hub: HubRepo) -> BaseException | None:
    """Create the repository; an existing one is fine. Returns a 403 refusal instead of
    raising it: a token may write a repository without the right to create one (the
    commit then says whether it may). huggingface_hub's own ``exist_ok`` does not do here:
    after a 403 it re-parses the repository URL against the public Hub's host."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(hub.repo, private=hub.private)
    except HfHubHTTPError as error:
        if http_status(error) == 409:  # it exists
            return None
        if http_status(error) == 403:
            return error
        raise
    return None


def http_status(error: BaseException) -> int | None:
    return getattr(getattr(error, "response", None), "status_code", None)


def hub_failure(error: BaseException, hub: HubRepo, token: str | None) -> PublishError:
    """The reason and one line for a failed Hub call, without the token."""
    import httpx2  # huggingface_hub's HTTP client

    status = http_status(error)
    where = f"{hub.repo} on {hub.endpoint}"
    if status == 401:
        message = f"the Hub refused the token for {where} (401 Unauthorized): it is wrong or expired"
        return PublishError(Reason.HUB_UNAUTHORIZED, message)
    if status == 403:
        message = (
            f"the token may not create or write {where} (403 Forbidden):"
            f" give it write access to {hub.namespace}, or publish elsewhere"
        )
        return PublishError(Reason.HUB_FORBIDDEN, message)
    if isinstance(error, httpx2.TransportError) or (status is not None and status >= 500):
        answer = f"answered {status}" if status else f"did not answer ({redact(one_line(error), token)})"
        return PublishError(Reason.HUB_UNREACHABLE, f"the Hub at {hub.endpoint} {answer} while publishing {hub.repo}")
    return PublishError(Reason.PUBLISH_FAILED, f"publishing {where} failed: {redact(one_line(error), token)}")


def local_token() -> str:
    """The token `botfleet publish` uses: ``$HF_TOKEN``."""
    token = os.environ.get(HF_TOKEN_ENV, "").strip()
    if not token:
        raise PublishError(Reason.PUBLISH_FAILED, f"set {HF_TOKEN_ENV} to a Hub token that may write the repository")
    return token
