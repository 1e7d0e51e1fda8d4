"""MhaError and the two ways a call fails: _check turns a non-zero mha_status
into MhaError with mha_last_error()'s message (read at once, in the calling
thread), and _fail raises it by status name for a check this package makes
itself before calling the library (_lib.STATUS and _lib.STATUS_NAMES hold
the enum's names and values)."""
from . import _lib


class MhaError(Exception):
    """A failed mha call.

    status       the mha_status value (int)
    status_name  its enum name, e.g. "MHA_STATUS_INVALID_SHAPE"
    description  mha_status_string(status), e.g. "invalid shape"
    message      mha_last_error() of the failed call (or this package's
                 message for a check made before calling the library)
    """

    def __init__(self, status, message, description=None):
        self.status = int(status)
        self.status_name = _lib.STATUS_NAMES.get(self.status, f"MHA_STATUS_{self.status}")
        if description is None:
            try:
                description = _lib.lib().mha_status_string(self.status).decode()
            except Exception:  # the library may be missing: keep the name
                description = self.status_name[len("MHA_STATUS_"):].lower().replace("_", " ")
        self.description = description
        self.message = message
        super().__init__(f"{self.status_name} ({description}): {message}")


def _fail(status_name, message):
    raise MhaError(_lib.STATUS[status_name], message)


def _check(status):
    """Raises MhaError for a non-zero status; reads mha_last_error() at once, in
    the calling thread (the message is thread-local)."""
    if status != 0:
        msg = _lib.lib().mha_last_error()
        raise MhaError(status, msg.decode("utf-8", "replace") if msg else "")
