"""The wire side of the Triton backend: the model URI and one client API for HTTP and gRPC.

``triton://host[:8000]/model[/version][?timeout=S]`` speaks HTTP, ``triton+grpc://host[:8001]/...``
gRPC (tritonclient, the ``triton`` extra).  Credentials in the URI (``user:password@``) go to the
server as a Basic ``authorization`` header and never into a message: ``TritonTarget.where`` is
the server's password-free name.  Every call carries the URI's timeout.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from segedge.runtime.contract import first_line
from segedge.runtime.errors import BackendUnavailableError, InputError
from segedge.runtime.redact import redact

log = logging.getLogger("segedge.runtime")

Protocol = Literal["http", "grpc"]
SCHEMES: dict[str, Protocol] = {"triton": "http", "triton+grpc": "grpc"}
DEFAULT_PORTS: dict[Protocol, int] = {"http": 8000, "grpc": 8001}
DEFAULT_TIMEOUT_S = 30.0
URI_FORM = "triton[+grpc]://host[:port]/model[/version][?timeout=SECONDS]"


@dataclass(frozen=True)
class TritonTarget:
    """One model on one server, parsed from the URI; ``where`` is its password-free name."""

    protocol: Protocol
    host: str
    port: int
    model: str
    version: str = ""  # "" = the server's choice (its version policy)
    timeout_s: float = DEFAULT_TIMEOUT_S
    auth: str | None = field(default=None, repr=False)  # "user:password" -> Basic header

    def __post_init__(self) -> None:
        if self.protocol not in DEFAULT_PORTS:
            raise InputError("triton protocol", "http or grpc", repr(self.protocol))
        if not self.host:
            raise InputError("model", f"a host in {URI_FORM}", "none")
        if not 0 < self.port < 65536:
            raise InputError("triton port", "1..65535", self.port)
        if not self.model or "/" in self.model:
            raise InputError("model", f"a model name in {URI_FORM}", repr(self.model))
        if self.version and not self.version.isdigit():
            raise InputError("triton model version", "a positive integer", repr(self.version))
        if not 0 < self.timeout_s <= 3600:
            raise InputError("triton timeout", "seconds in (0, 3600]", self.timeout_s)

    @classmethod
    def parse(cls, uri: str) -> TritonTarget:
        shown = redact(uri)
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as err:
            raise InputError("model", URI_FORM, f"{shown} ({err})") from err
        protocol = SCHEMES.get(parts.scheme.lower())
        if protocol is None:
            raise InputError("model", URI_FORM, shown)
        path = [unquote(p) for p in parts.path.split("/") if p]
        if not 1 <= len(path) <= 2:
            raise InputError("model", URI_FORM, shown)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - {"timeout"})
        if unknown:
            raise InputError("model", f"{URI_FORM} (query: timeout only)", shown)
        try:
            timeout = float(query.get("timeout", DEFAULT_TIMEOUT_S))
        except ValueError as err:
            raise InputError("triton timeout", "seconds", repr(query["timeout"])) from err
        auth = None
        if parts.username is not None:
            auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return cls(protocol, parts.hostname or "", port or DEFAULT_PORTS[protocol], path[0],
                   path[1] if len(path) == 2 else "", timeout, auth)

    @property
    def url(self) -> str:
        """What tritonclient connects to: host:port (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def where(self) -> str:
        return f"{self.protocol}://{self.url}"

    @property
    def headers(self) -> dict[str, str] | None:
        if self.auth is None:
            return None
        token = base64.b64encode(self.auth.encode()).decode()
        return {"authorization": f"Basic {token}"}


def import_client(protocol: Protocol) -> Any:
    try:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as err:
        raise BackendUnavailableError(
            f"triton: expected tritonclient[{protocol}] (pip install 'segedge[triton]'), got "
            f"{type(err).__name__}: {first_line(err)}") from err
    return module


class TritonClient:
    """The calls segedge makes, with one answer format for HTTP and gRPC.

    HTTP clients (geventhttpclient) belong to the thread that made them, so each thread
    gets its own; gRPC's is shared.  Every call carries the target's timeout.
    """

    def __init__(self, target: TritonTarget) -> None:
        self.target = target
        self.module = import_client(target.protocol)
        self._local = threading.local()
        self._made: list[Any] = []
        self._lock = threading.Lock()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None and self.target.protocol == "grpc" and self._made:
            client = self._made[0]
        if client is None:
            t = self.target
            if t.protocol == "http":
                client = self.module.InferenceServerClient(
                    t.url, connection_timeout=t.timeout_s, network_timeout=t.timeout_s)
            else:
                client = self.module.InferenceServerClient(t.url)
            with self._lock:
                self._made.append(client)
            self._local.client = client
        return client

    def _kw(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"headers": self.target.headers}
        if self.target.protocol == "grpc":
            kw["client_timeout"] = self.target.timeout_s
        return kw

    def live(self) -> bool:
        return bool(self._client().is_server_live(**self._kw()))

    def ready(self) -> bool:
        return bool(self._client().is_server_ready(**self._kw()))

    def model_ready(self) -> bool:
        t = self.target
        return bool(self._client().is_model_ready(t.model, t.version, **self._kw()))

    def model_metadata(self) -> dict[str, Any]:
        t, kw = self.target, self._kw()
        if t.protocol == "grpc":
            kw["as_json"] = True
        raw = self._client().get_model_metadata(t.model, t.version, **kw)
        for tensor in (*raw.get("inputs", []), *raw.get("outputs", [])):
            tensor["shape"] = [int(d) for d in tensor.get("shape", [])]  # gRPC JSON: strings
        return dict(raw)

    def model_config(self) -> dict[str, Any]:
        t, kw = self.target, self._kw()
        if t.protocol == "grpc":
            kw["as_json"] = True
        raw = self._client().get_model_config(t.model, t.version, **kw)
        return dict(raw.get("config", raw))  # gRPC wraps it in {"config": ...}

    def infer(self, name: str, tensor: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        from tritonclient.utils import np_to_triton_dtype

        m, t = self.module, self.target
        feed = m.InferInput(name, list(tensor.shape), np_to_triton_dtype(tensor.dtype))
        if t.protocol == "http":
            feed.set_data_from_numpy(tensor, binary_data=True)
            wanted = [m.InferRequestedOutput(o, binary_data=True) for o in outputs]
        else:
            feed.set_data_from_numpy(tensor)
            wanted = [m.InferRequestedOutput(o) for o in outputs]
        result = self._client().infer(t.model, [feed], model_version=t.version,
                                      outputs=wanted, **self._kw())
        return {o: result.as_numpy(o) for o in outputs}

    def reset(self) -> None:
        """Drop this thread's HTTP connection after a failed call: a late answer to a request
        that timed out must not be read as the answer to the next one."""
        client = getattr(self._local, "client", None)
        if client is None or self.target.protocol != "http":
            return
        self._local.client = None
        with self._lock:
            self._made = [c for c in self._made if c is not client]
        try:
            client.close()
        except Exception:  # noqa: BLE001 - it failed already
            log.debug("closing a failed triton client failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for client in made:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection must not fail a run
                log.debug("closing a triton client failed", exc_info=True)


def message_of(err: BaseException) -> str:
    """tritonclient's exceptions keep their text in .message() (str() can be empty)."""
    message = getattr(err, "message", None)
    text = message() if callable(message) else None
    return first_line(Exception(text)) if text else first_line(err)


def status_of(err: BaseException) -> str:
    method = getattr(err, "status", None)
    status = method() if callable(method) else None
    return str(status or "")
