"""pyarrow's S3 filesystem with a retry strategy that survives pickling.

Ray Train sends the run's filesystem to its controller and workers pickled, and pyarrow's
S3FileSystem drops its ``retry_strategy`` on the way: there, an object-store outage failed
the first checkpoint upload it met. Imported only where pyarrow is (the job image).
"""

from __future__ import annotations

from pyarrow import fs


class RetryingS3FileSystem(fs.S3FileSystem):
    """An S3FileSystem whose uploads and reads wait out an outage, in every process it reaches."""

    def __init__(self, retry_attempts: int, **options) -> None:
        super().__init__(retry_strategy=fs.AwsDefaultS3RetryStrategy(max_attempts=retry_attempts), **options)
        self._made_with = (retry_attempts, options)

    def __reduce__(self):
        return (_remake, self._made_with)


def _remake(retry_attempts: int, options: dict) -> RetryingS3FileSystem:
    return RetryingS3FileSystem(retry_attempts, **options)
