"""``silverlining market serve``: the ASGI app (API, OSB broker) and its process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from silverlining import __version__
from silverlining.market.api import API_PREFIX, install
from silverlining.market.moves import MoveRunner
from silverlining.market.osb import OsbError, build_osb, osb_error_response
from silverlining.market.scheduler import Scheduler
from silverlining.market.state import MarketState
from silverlining.market.web import build_web

DESCRIPTION = """The Silver Lining federated market: certified providers, their offers, orders
and subscriptions. Authenticate with `Authorization: Bearer <token>`; the first start of
`silverlining market serve` prints the admin token once."""


def create_app(state: MarketState, *, schedule: bool = True) -> FastAPI:
    mover = MoveRunner(state, workers=state.settings.move_workers)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler = Scheduler(state) if schedule else None
        if scheduler is not None:
            scheduler.start()
        mover.resume()  # moves a stopped market left half-way
        try:
            yield
        finally:
            mover.shutdown()
            if scheduler is not None:
                scheduler.stop()

    app = FastAPI(
        title="Silver Lining market", version=__version__, description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json", docs_url=None, redoc_url=None,
        lifespan=lifespan)
    app.state.mover = mover
    install(app, state)
    app.include_router(build_osb(state))
    app.include_router(build_web(state))  # the web interface, at /

    @app.exception_handler(OsbError)
    async def osb_error(request: Request, error: OsbError) -> JSONResponse:
        return osb_error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own shape, without echoing the input back (it may hold a password).
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                     "type": e.get("type", "")} for e in error.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    return app
