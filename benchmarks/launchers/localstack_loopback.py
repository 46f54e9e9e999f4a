"""Start LocalStack with its twisted gateway bound to 127.0.0.1.

LocalStack's twisted server opens ``TCP4ServerEndpoint(reactor, port)`` without an interface,
so it listens on 0.0.0.0 whatever GATEWAY_LISTEN says. The benchmark must stay on loopback,
and the hypercorn gateway (which honours the host) is about half as fast, so this launcher
gives the endpoint a loopback default and then runs ``python -m localstack.runtime.main``.
Runs in LocalStack's own virtual environment.
"""

import runpy

from twisted.internet import endpoints

_Endpoint = endpoints.TCP4ServerEndpoint


class _LoopbackTCP4ServerEndpoint(_Endpoint):  # type: ignore[misc, valid-type]
    def __init__(self, reactor, port, backlog=50, interface=""):  # type: ignore[no-untyped-def]
        super().__init__(reactor, port, backlog, interface or "127.0.0.1")


endpoints.TCP4ServerEndpoint = _LoopbackTCP4ServerEndpoint

if __name__ == "__main__":
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
