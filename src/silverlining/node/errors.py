"""S3 errors, one class per AWS error code, each carrying its HTTP status.

Both the domain and the protocol layers raise these; the protocol layer is the only place
that renders them (as S3 error XML). Codes and statuses follow
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList
"""

from __future__ import annotations

from typing import ClassVar


class S3Error(Exception):
    """An error with an S3 error code; rendered as ``<Error><Code>..`` with ``status``."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, **extra: str) -> None:
        self.message = message or self.default_message
        #: Extra elements rendered inside <Error> (e.g. BucketName, Key, ArgumentName).
        self.extra: dict[str, str] = {k: v for k, v in extra.items() if v is not None}
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AccessDenied(S3Error):
    code = "AccessDenied"
    status = 403
    default_message = "Access Denied"


class InvalidAccessKeyId(S3Error):
    code = "InvalidAccessKeyId"
    status = 403
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(S3Error):
    code = "SignatureDoesNotMatch"
    status = 403
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class RequestTimeTooSkewed(S3Error):
    code = "RequestTimeTooSkewed"
    status = 403
    default_message = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(S3Error):
    code = "AuthorizationHeaderMalformed"
    status = 400
    default_message = "The authorization header is malformed."


class AuthorizationQueryParametersError(S3Error):
    code = "AuthorizationQueryParametersError"
    status = 400
    default_message = "Error parsing the X-Amz-Credential parameter."


class InvalidArgument(S3Error):
    code = "InvalidArgument"
    status = 400
    default_message = "Invalid Argument"


class InvalidRequest(S3Error):
    code = "InvalidRequest"
    status = 400
    default_message = "Invalid Request"


class InvalidBucketName(S3Error):
    code = "InvalidBucketName"
    status = 400
    default_message = "The specified bucket is not valid."


class BucketAlreadyExists(S3Error):
    code = "BucketAlreadyExists"
    status = 409
    default_message = (
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again."
    )


class BucketAlreadyOwnedByYou(S3Error):
    code = "BucketAlreadyOwnedByYou"
    status = 409
    default_message = (
        "Your previous request to create the named bucket succeeded and you already own it."
    )


class BucketNotEmpty(S3Error):
    code = "BucketNotEmpty"
    status = 409
    default_message = "The bucket you tried to delete is not empty"


class NoSuchBucket(S3Error):
    code = "NoSuchBucket"
    status = 404
    default_message = "The specified bucket does not exist"


class NoSuchKey(S3Error):
    code = "NoSuchKey"
    status = 404
    default_message = "The specified key does not exist."


class NoSuchUpload(S3Error):
    code = "NoSuchUpload"
    status = 404
    default_message = (
        "The specified upload does not exist. The upload ID may be invalid, or the upload may "
        "have been aborted or completed."
    )


class InvalidPart(S3Error):
    code = "InvalidPart"
    status = 400
    default_message = (
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."
    )


class InvalidPartOrder(S3Error):
    code = "InvalidPartOrder"
    status = 400
    default_message = (
        "The list of parts was not in ascending order. Parts must be ordered by part number."
    )


class EntityTooSmall(S3Error):
    code = "EntityTooSmall"
    status = 400
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


class EntityTooLarge(S3Error):
    code = "EntityTooLarge"
    status = 400
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class InvalidRange(S3Error):
    code = "InvalidRange"
    status = 416
    default_message = "The requested range is not satisfiable"


class InvalidPartNumber(S3Error):
    code = "InvalidPartNumber"
    status = 416
    default_message = "The requested partnumber is not satisfiable"


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    status = 412
    default_message = "At least one of the pre-conditions you specified did not hold"


class NotModified(S3Error):
    """304: rendered without a body, as S3 does."""

    code = "NotModified"
    status = 304
    default_message = "Not Modified"


class BadDigest(S3Error):
    code = "BadDigest"
    status = 400
    default_message = "The Content-MD5 you specified did not match what we received."


class InvalidDigest(S3Error):
    code = "InvalidDigest"
    status = 400
    default_message = "The Content-MD5 you specified is not valid."


class XAmzContentSHA256Mismatch(S3Error):
    code = "XAmzContentSHA256Mismatch"
    status = 400
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class MalformedXML(S3Error):
    code = "MalformedXML"
    status = 400
    default_message = (
        "The XML you provided was not well-formed or did not validate against our published "
        "schema."
    )


class MethodNotAllowed(S3Error):
    code = "MethodNotAllowed"
    status = 405
    default_message = "The specified method is not allowed against this resource."


class NotImplementedYet(S3Error):
    """Named to avoid shadowing the builtin ``NotImplemented``; code is ``NotImplemented``."""

    code = "NotImplemented"
    status = 501
    default_message = (
        "A header or query you provided implies functionality that is not implemented."
    )


class InternalError(S3Error):
    pass


class IncompleteBody(S3Error):
    code = "IncompleteBody"
    status = 400
    default_message = (
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )


class MissingContentLength(S3Error):
    code = "MissingContentLength"
    status = 411
    default_message = "You must provide the Content-Length HTTP header."


class KeyTooLongError(S3Error):
    code = "KeyTooLongError"
    status = 400
    default_message = "Your key is too long"


class MetadataTooLarge(S3Error):
    code = "MetadataTooLarge"
    status = 400
    default_message = "Your metadata headers exceed the maximum allowed metadata size."


class InvalidTag(S3Error):
    code = "InvalidTag"
    status = 400
    default_message = "The TagValue you have provided is invalid"


class InvalidLocationConstraint(S3Error):
    code = "InvalidLocationConstraint"
    status = 400
    default_message = "The specified location-constraint is not valid"




class InvalidURI(S3Error):
    code = "InvalidURI"
    status = 400
    default_message = "Couldn't parse the specified URI."


class RequestTimeout(S3Error):
    code = "RequestTimeout"
    status = 400
    default_message = (
        "Your socket connection to the server was not read from or written to within the "
        "timeout period."
    )


class MaxMessageLengthExceeded(S3Error):
    code = "MaxMessageLengthExceeded"
    status = 400
    default_message = "Your request was too big."


class RequestHeaderSectionTooLarge(S3Error):
    code = "RequestHeaderSectionTooLarge"
    status = 400
    default_message = "Your request header section exceeds the maximum allowed size."


class InvalidStorageClass(S3Error):
    code = "InvalidStorageClass"
    status = 400
    default_message = "The storage class you specified is not valid"


class QuotaExceeded(S3Error):
    """Per-account quota (bytes or object count) set by the operator; same code as Ceph RGW."""

    code = "QuotaExceeded"
    status = 403
    default_message = "The account's storage quota has been exceeded."








class AccessControlListNotSupported(S3Error):
    code = "AccessControlListNotSupported"
    status = 400
    default_message = "The bucket does not allow ACLs"


class InvalidBucketAclWithObjectOwnership(S3Error):
    code = "InvalidBucketAclWithObjectOwnership"
    status = 400
    default_message = (
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
    )


def _not_configured(code: str, message: str) -> type[S3Error]:
    return type(code, (S3Error,), {"code": code, "status": 404, "default_message": message})


#: "Nothing configured" answers for bucket sub-resources this node never has set.
NoSuchBucketPolicy = _not_configured("NoSuchBucketPolicy", "The bucket policy does not exist")
NoSuchCORSConfiguration = _not_configured("NoSuchCORSConfiguration",
                                          "The CORS configuration does not exist")
NoSuchLifecycleConfiguration = _not_configured("NoSuchLifecycleConfiguration",
                                               "The lifecycle configuration does not exist")
NoSuchTagSet = _not_configured("NoSuchTagSet", "The TagSet does not exist")
NoSuchWebsiteConfiguration = _not_configured("NoSuchWebsiteConfiguration",
                                             "The specified bucket does not have a website "
                                             "configuration")
ServerSideEncryptionConfigurationNotFoundError = _not_configured(
    "ServerSideEncryptionConfigurationNotFoundError",
    "The server side encryption configuration was not found")
NoSuchPublicAccessBlockConfiguration = _not_configured(
    "NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not found")
ObjectLockConfigurationNotFoundError = _not_configured(
    "ObjectLockConfigurationNotFoundError",
    "Object Lock configuration does not exist for this bucket")
ReplicationConfigurationNotFoundError = _not_configured(
    "ReplicationConfigurationNotFoundError", "The replication configuration was not found")
