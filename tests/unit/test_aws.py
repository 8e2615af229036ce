"""``aws.translate``: one reading of a failed AWS call, permanent or transient.

The exceptions are botocore's own, built as botocore builds them from an error answer.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from chalicelib import aws


def answered(code: str, status: int, message: str = "nope") -> ClientError:
    response = {"Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetItem")  # type: ignore[arg-type]


PERMANENT = [
    answered("AccessDeniedException", 400),
    answered("AccessDenied", 403),
    answered("403", 403, ""),
    answered("ResourceNotFoundException", 400),
    answered("NoSuchBucket", 404),
    answered("ValidationException", 400),
    answered("UnrecognizedClientException", 400),
    NoCredentialsError(),
    ParamValidationError(report="Missing required parameter"),
]

TRANSIENT = [
    answered("ThrottlingException", 400),
    answered("ProvisionedThroughputExceededException", 400),
    answered("SlowDown", 503),
    answered("InternalServerError", 500),
    answered("SomethingNew", 502),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
]


@pytest.mark.parametrize("exc", PERMANENT, ids=[type(e).__name__ + str(i) for i, e in
                                                enumerate(PERMANENT)])
def test_a_refusal_trying_again_cannot_mend_is_permanent(exc):
    failure = aws.translate(exc)
    assert failure.permanent and not failure.transient
    assert not aws.is_transient(exc)
    assert isinstance(exc, aws.CALL_ERRORS)


@pytest.mark.parametrize("exc", TRANSIENT, ids=[type(e).__name__ + str(i) for i, e in
                                                enumerate(TRANSIENT)])
def test_throttling_server_errors_and_no_answer_are_transient(exc):
    failure = aws.translate(exc)
    assert failure.transient and not failure.permanent
    assert aws.is_transient(exc)
    assert isinstance(exc, aws.CALL_ERRORS)


def test_the_failure_names_its_code_status_and_message():
    failure = aws.translate(answered("AccessDeniedException", 400, "not allowed"))
    assert (failure.code, failure.status, failure.message) == (
        "AccessDeniedException", 400, "not allowed"
    )
    assert str(failure) == "AccessDeniedException: not allowed"
    assert not failure.ambiguous  # refused: it did not take effect


def test_a_request_without_an_answer_or_with_a_server_error_may_have_taken_effect():
    assert aws.translate(ReadTimeoutError(endpoint_url="http://x")).ambiguous
    assert aws.translate(answered("InternalError", 500)).ambiguous
    unanswered = aws.translate(EndpointConnectionError(endpoint_url="http://x"))
    assert unanswered.status == 0 and unanswered.code == "EndpointConnectionError"
