"""Every reason a BotRequest's status, conditions and events give: one name each, one meaning.

Users read these in ``kubectl get botrequests -o wide`` and ``kubectl describe``; the job
writes the failure reasons into ``result.json``; docs/api.md lists them all (generated).
"""

from __future__ import annotations

from enum import StrEnum

# Where a reason shows up (the docs group them by this).
PHASE = "status"  # status.reason while the request moves on
FAILURE = "status (Failed)"  # status.reason of a failed request, and its conditions'
CONDITION = "condition"  # the DataReady and Trained conditions while they are not settled
EVENT = "event"  # Kubernetes events only


class Reason(StrEnum):
    """A CamelCase reason with where it appears and what it means."""

    def __new__(cls, value: str, where: str, description: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.where = where
        member.description = description
        return member

    QUEUED = "Queued", PHASE, "waiting for a training slot (operator setting max_concurrent)"
    OUTPUT_IN_USE = "OutputInUse", PHASE, "another BotRequest owns the output folder (spec.output.uri)"
    LAUNCHING = "Launching", PHASE, "admitted: the training job is being created"
    SUSPENDED = "Suspended", PHASE, "the RayJob is suspended, e.g. waiting for quota in a Kueue queue"
    JOB_STARTING = "JobStarting", PHASE, "the job exists; its Ray cluster or driver is not running yet"
    RETRYING = "Retrying", PHASE, "the job failed and runs again (spec.backoffLimit; KubeRay's, for kuberay)"
    PREPARING_DATA = "PreparingData", PHASE, "the data stage is gathering and filtering posts"
    TRAINING_STARTING = "TrainingStarting", PHASE, "the dataset is ready; training is starting"
    TRAINING = "Training", PHASE, "training runs (status.progress shows the step); also the Trained condition's"
    JOB_FINISHING = "JobFinishing", PHASE, "training is done; the job is saving and finishing"
    WRITING_CARD = "WritingCard", PHASE, "the job succeeded; the model card is being written"
    SUCCEEDED = "Succeeded", PHASE, "the model and its card are published"
    PUBLISH_PENDING = (
        "PublishPending",
        PHASE,
        "spec.publish: the trained model is being published to the Hub (the Published condition's until it is)",
    )
    REFRESHING = "Refreshing", PHASE, "a refresh (schedule or annotation) runs the job again on what is new"
    SUSPENDING = "Suspending", PHASE, "spec.suspend is true: the job is being stopped"
    SUSPEND_REQUESTED = (
        "SuspendRequested",
        PHASE,
        "spec.suspend is true: no job runs, no training slot is held; false resumes from the newest checkpoint",
    )
    RETRY_REQUESTED = (
        "RetryRequested",
        PHASE,
        "a retry of the failed request was asked for (annotation botfleet.dev/retry-requested)",
    )

    INVALID_SPEC = "InvalidSpec", FAILURE, "the spec breaks a rule the API server cannot check"
    NOT_ENOUGH_POSTS = "NotEnoughPosts", FAILURE, "a handle kept too little text to train on"
    SOURCE_FAILED = "SourceFailed", FAILURE, "a handle's posts could not be fetched (no such account, file...)"
    DATA_FAILED = "DataFailed", FAILURE, "the data stage failed otherwise (e.g. the object store)"
    TRAINING_FAILED = "TrainingFailed", FAILURE, "training failed (base model, dataset, memory, workers...)"
    PUBLISHING_FAILED = "PublishingFailed", FAILURE, "the model was trained but its card or tracking files were not"
    MODEL_MISSING = "ModelMissing", FAILURE, "the job succeeded but wrote no model"
    JOB_FAILED = "JobFailed", FAILURE, "the job failed without saying why"
    JOB_STOPPED = "JobStopped", FAILURE, "the job was stopped before it finished"
    APP_FAILED = "AppFailed", FAILURE, "KubeRay: the job's program exited with an error"
    DEADLINE_EXCEEDED = "DeadlineExceeded", FAILURE, "the job ran past its activeDeadlineSeconds"
    PRE_RUNNING_DEADLINE_EXCEEDED = (
        "PreRunningDeadlineExceeded",
        FAILURE,
        "the job waited past its preRunningDeadlineSeconds for its resources (the message says for what)",
    )
    VALIDATION_FAILED = "ValidationFailed", FAILURE, "KubeRay: the RayJob was rejected as invalid"
    SUBMISSION_FAILED = "SubmissionFailed", FAILURE, "KubeRay: the job could not be submitted to its Ray cluster"

    DATASET_READY = "DatasetReady", CONDITION, "DataReady: the dataset is in the object store"
    TRAINING_SUCCEEDED = "TrainingSucceeded", CONDITION, "Trained: the training job succeeded"
    PENDING = "Pending", CONDITION, "DataReady/Trained: the request has not started that stage"
    PREPARING = "Preparing", CONDITION, "DataReady: the data stage has not finished"
    SERVED = "Served", CONDITION, "Serving: the serving catalog lists the bot (status.serving says where)"
    SERVING_DISABLED = "ServingDisabled", CONDITION, "Serving: spec.serving.enabled is false"
    NOT_TRAINED = "NotTrained", CONDITION, "Serving: the bot is served once its current spec has succeeded"

    PARROT_CHECK_FAILED = (
        "ParrotCheckFailed",
        FAILURE,
        "the bot repeats its training posts verbatim too often to publish (see spec.publish.allowParrot)",
    )
    HUB_UNAUTHORIZED = "HubUnauthorized", FAILURE, "the Hub refused the token (401): wrong or expired; retried"
    HUB_FORBIDDEN = "HubForbidden", FAILURE, "the token may not create or write the Hub repository (403); retried"
    HUB_UNREACHABLE = "HubUnreachable", FAILURE, "the Hub did not answer, or answered a server error; retried"
    PUBLISH_FAILED = "PublishFailed", FAILURE, "publishing to the Hub failed otherwise (e.g. no token); retried"

    PUBLISHED = "Published", CONDITION, "Published: the model is on the Hugging Face Hub (status.publish)"
    RESUMED = "Resumed", CONDITION, "Suspended: spec.suspend is false again; training resumes"

    JOB_CREATED = "JobCreated", EVENT, "the operator created the training job (the message gives its worker shape)"
    SUPERSEDED = "Superseded", EVENT, "the spec changed: the older generation's job was stopped"
    CARD_WRITTEN = "CardWritten", EVENT, "the job left no model card: the operator wrote one"
    CARD_FAILED = "CardFailed", EVENT, "the operator could not write the missing model card"
    RECONCILE_ERROR = (
        "ReconcileError",
        PHASE,
        "reconciles of the request fail (the message says why); they are retried, less and less often",
    )
    RAY_UNAUTHORIZED = (
        "RayUnauthorized",
        PHASE,
        "the Ray cluster refuses the operator: its auth token is missing or wrong (ray executor); retried",
    )
    RAY_UNREACHABLE = (
        "RayUnreachable",
        PHASE,
        "the operator cannot reach the Ray cluster's dashboard (ray executor); retried",
    )


# The failure reason of a job that says only which stage failed (or, from an older job,
# not even why).
STAGE_FAILURES = {
    "data": Reason.DATA_FAILED,
    "training": Reason.TRAINING_FAILED,
    "publishing": Reason.PUBLISHING_FAILED,
}

# A failed publish that the operator tries again on every reconcile (the model is safe in
# the object store; a fixed token, granted rights or a Hub that is back make it pass).
# A parrot check that failed is not among them: only a new spec changes its verdict.
RETRIED_PUBLISH_FAILURES = frozenset(
    {Reason.HUB_UNAUTHORIZED, Reason.HUB_FORBIDDEN, Reason.HUB_UNREACHABLE, Reason.PUBLISH_FAILED}
)
