"""Chaining our hooks behind the user's: ours runs exactly once per call, whether or not the user's calls it."""

from __future__ import annotations

import threading

import gunicorn.config
import pytest

from otel_gunicorn._hook_chain import HookChain


class Ours:
    """Our side of one hook: counts its calls, tells the chain first, as each of otel_gunicorn's hooks does."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.chain: HookChain | None = None

    def __call__(self, worker: object, req: object) -> None:
        assert self.chain is not None
        self.chain.ours_called("pre_request")
        self.calls.append((worker, req))


def make_chain() -> tuple[HookChain, Ours, list[str]]:
    ours = Ours()
    forgotten: list[str] = []
    chain = HookChain({"pre_request": ours}, forgotten.append)
    ours.chain = chain
    return chain, ours, forgotten


def test_a_user_hook_that_forgets_ours_gets_ours_after_it_and_one_report():
    chain, ours, forgotten = make_chain()
    cfg = gunicorn.config.Config()
    seen = []
    cfg.set("pre_request", lambda worker, req: seen.append(req))
    assert ["pre_request"] == chain.install(cfg)
    for req in range(3):
        cfg.pre_request("w", req)
    assert [0, 1, 2] == seen
    assert [("w", 0), ("w", 1), ("w", 2)] == ours.calls
    assert ["pre_request"] == forgotten, "reported once per process, not per call"


def test_a_user_hook_that_calls_ours_runs_it_once_and_is_not_reported():
    chain, ours, forgotten = make_chain()
    cfg = gunicorn.config.Config()
    cfg.set("pre_request", lambda worker, req: ours(worker, req))
    chain.install(cfg)
    cfg.pre_request("w", 1)
    assert [("w", 1)] == ours.calls
    assert [] == forgotten


def test_ours_runs_even_when_the_users_hook_raises():
    """Otherwise a request counted in flight by pre_request would stay in flight forever."""
    chain, ours, _forgotten = make_chain()
    cfg = gunicorn.config.Config()

    def broken(worker: object, req: object) -> None:
        raise RuntimeError("user bug")

    cfg.set("pre_request", broken)
    chain.install(cfg)
    with pytest.raises(RuntimeError):
        cfg.pre_request("w", 1)
    assert [("w", 1)] == ours.calls


def test_gunicorns_default_is_replaced_by_ours_and_ours_is_not_wrapped():
    chain, ours, forgotten = make_chain()
    cfg = gunicorn.config.Config()
    assert [] == chain.install(cfg)
    assert cfg.pre_request is ours
    assert not chain.active, "nothing wrapped: our hooks skip the bookkeeping"
    cfg.pre_request("w", 1)
    assert [] == forgotten


def test_install_is_once_per_configuration_object():
    chain, ours, _forgotten = make_chain()
    cfg = gunicorn.config.Config()
    cfg.set("pre_request", lambda worker, req: None)
    assert ["pre_request"] == chain.install(cfg)
    assert [] == chain.install(cfg)
    cfg.pre_request("w", 1)
    assert 1 == len(ours.calls), "a second install must not wrap the wrapper"


def test_concurrent_calls_are_told_apart():
    """Each call has its own record of whether ours ran: a thread whose user hook calls ours does not hide another
    thread's forgetting one."""
    chain, ours, _forgotten = make_chain()
    cfg = gunicorn.config.Config()
    inside = threading.Barrier(2)

    def sometimes(worker: object, req: object) -> None:
        inside.wait(timeout=5)  # both calls are inside their user hook at once
        if req == "calls-ours":
            ours(worker, req)

    cfg.set("pre_request", sometimes)
    chain.install(cfg)
    threads = [threading.Thread(target=cfg.pre_request, args=("w", r)) for r in ("calls-ours", "forgets")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert sorted(r for _w, r in ours.calls) == ["calls-ours", "forgets"]
