"""The one error type for a bad request, shared by the protocol types, the runtime and server."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """A bad request; `param` names the offending field (None for the request as a whole).

    Sampling-parameter errors name the field inside `sampling_params` ("top_p"); layers that
    nest the params under a key prefix it themselves (`with_prefix`).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def with_prefix(self, prefix: str) -> InvalidRequest:
        """The same error with `param` moved under `prefix` (`prefix` alone when none)."""
        param = f"{prefix}.{self.param}" if self.param else prefix
        return InvalidRequest(str(self), param)
