"""What the installed S3 client must be able to do: send a create-only PUT.

s3fs drops keyword arguments that the installed botocore's PutObject does not know, so with a
client too old for ``If-None-Match`` a create-only write silently overwrites; the plugin refuses
such a client when a trail is opened.
"""

from __future__ import annotations

import functools

import botocore
import botocore.session

from trailstore.errors import ConfigurationError

#: the PutObject parameter the protocol relies on, and the botocore this plugin requires
CONDITIONAL_PUT_PARAMETERS = frozenset({"IfNoneMatch"})
BOTOCORE_FLOOR = "1.35.74"


@functools.cache
def put_object_parameters() -> frozenset[str]:
    """The PutObject parameters the installed botocore knows (its S3 model, read once)."""
    model = botocore.session.get_session().get_service_model("s3")
    return frozenset(model.operation_model("PutObject").input_shape.members)


def require_conditional_puts() -> None:
    """Refuse a botocore too old to send ``If-None-Match``: the raw client would reject every
    create-only PUT, and the s3fs API would silently drop the condition."""
    missing = CONDITIONAL_PUT_PARAMETERS - put_object_parameters()
    if missing:
        raise ConfigurationError(
            f"botocore {botocore.__version__} is too old for trailstore-s3: its PutObject "
            f"lacks {', '.join(sorted(missing))}, which create-only writes need; upgrade to "
            f"botocore>={BOTOCORE_FLOOR} (aiobotocore>=2.16.0, s3fs>=2024.12.0)"
        )
