"""swapcore on a real local Ray cluster: three nodes on this machine, fake models as subprocesses.

One cluster and one application serve the whole module (starting Ray and
Serve costs about 20 s on 2 cores); the tests run in file order and the
last ones remove a node under load and shut everything down.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from system_helpers import free_port, pids_with, port_block

if os.environ.get("SWAPCORE_REQUIRE_RAY") != "1":
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the ray extra)")
httpx = pytest.importorskip("httpx")

from ray.cluster_utils import Cluster  # noqa: E402

import ray  # noqa: E402
from ray import serve  # noqa: E402
from swapcore import AffinityPolicy  # noqa: E402
from swapcore.adapters.ray import build_app  # noqa: E402

MODELS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
TIMEOUT = 60.0  # seconds: the bound on any one wait here (never reached when all is well)
# Serve's controller kills an HTTP proxy not ready within 5 s, and serve.start
# then fails: on 2 busy cores a proxy's first start can take longer. The nodes'
# processes inherit these from the test's environment.
SLOW_MACHINE_ENV = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "45",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
}


def cluster_config(marker: str, start_port: int) -> str:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    name = f"--model-name {marker}-${{MODEL_ID}}"
    models = "\n".join(
        f"""\
  {model}:
    cmd: "{fake} --port ${{PORT}} --load 0.3 --tokens 4 --token-delay 0.01 {name}"
    proxy: "http://127.0.0.1:${{PORT}}"
    memory: 8GiB
    sendLoadingState: true
"""
        for model in MODELS
    )
    return f"""\
healthCheckTimeout: 30
startPort: {start_port}
models:
{models}
swapcore:
  memory_budget: 16GiB
"""


def wait_for(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class App:
    def __init__(self, cluster: Cluster, nodes: list[Any], url: str, marker: str) -> None:
        self.cluster = cluster
        self.nodes = nodes
        self.url = url
        self.marker = marker
        self.client = httpx.Client(timeout=TIMEOUT)

    def chat(self, model: str, *, stream: bool = False) -> httpx.Response:
        return self.client.post(
            f"{self.url}/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
            },
        )

    def hosts(self) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.url}/cluster")
        assert response.status_code == 200, response.text
        hosts: list[dict[str, Any]] = response.json()["hosts"]
        return hosts

    def settled_hosts(self, since: float, count: int | None = None) -> list[dict[str, Any]]:
        """Every host's report, once each was made after ``since`` with nothing loading or open."""

        def fresh() -> list[dict[str, Any]] | None:
            hosts = self.hosts()
            if count is not None and len(hosts) != count:
                return None
            if all(
                (h.get("at") or 0) > since
                and not h.get("loading")
                and not h.get("in_flight")
                and not h.get("queued")
                for h in hosts
            ):
                return hosts
            return None

        result: list[dict[str, Any]] = wait_for(fresh, "fresh host reports")
        return result


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    marker = f"swapcore-ray-test-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in SLOW_MACHINE_ENV.items():
            env.setenv(name, value)
        yield from _cluster_app(marker)


def _cluster_app(marker: str) -> Iterator[App]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "resources": {"head": 1}},
    )
    try:
        nodes = [cluster.add_node(num_cpus=1, resources={"swaphost": 1}) for _ in range(3)]
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        port = free_port()
        # One HTTP proxy, on the head: the nodes here share one address, and a proxy on a
        # removed node would drop its connections (a real cluster's load balancer would
        # steer clear of it). The front lives on the head too, for the same reason.
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        application = build_app(
            cluster_config(marker, port_block(len(MODELS))),
            hosts=3,
            policy=AffinityPolicy(),  # given, so it travels to the front's router packed
            host_options={
                "ray_actor_options": {"num_cpus": 0, "resources": {"swaphost": 1}},
                "max_replicas_per_node": 1,
            },
            front_options={"ray_actor_options": {"num_cpus": 0, "resources": {"head": 0.01}}},
        )
        serve.run(application, route_prefix="/")
        yield App(cluster, nodes, f"http://127.0.0.1:{port}", marker)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.shutdown()
        for pid in pids_with(marker):  # whatever happened, leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_health_and_model_list(app: App) -> None:
    assert app.client.get(f"{app.url}/health").text == "OK"
    listing = app.client.get(f"{app.url}/v1/models").json()
    assert [m["id"] for m in listing["data"]] == list(MODELS)


def test_a_rush_for_every_model_loads_each_once_on_a_host_with_room(app: App) -> None:
    # Three requests per model, all at once, on a cold cluster: Ray routes them
    # concurrently, before any host has reported a model.
    rush = [model for model in MODELS for _ in range(3)]
    with concurrent.futures.ThreadPoolExecutor(len(rush)) as pool:
        responses = list(pool.map(app.chat, rush))
    assert [r.status_code for r in responses] == [200] * len(rush), [r.text for r in responses]
    assert [r.json()["model"] for r in responses] == rush
    for model in MODELS:  # and again, one by one: nothing moves
        assert app.chat(model).status_code == 200
    hosts = app.settled_hosts(time.time(), count=3)
    held = sorted(m for h in hosts for m in h["ready"])
    assert held == sorted(MODELS)  # every model on exactly one host
    assert all(len(h["ready"]) == 2 for h in hosts)  # spread: each host full, none over
    assert sum(h["counts"]["loads"] for h in hosts) == len(MODELS)
    assert sum(h["counts"]["evictions"] for h in hosts) == 0


def test_concurrent_requests_for_a_held_model_stay_on_its_host(app: App) -> None:
    before = app.settled_hosts(time.time(), count=3)
    holder = next(h["replica"] for h in before if "charlie" in h["ready"])
    served_before = {h["replica"]: h["counts"]["served"] for h in before}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: app.chat("charlie").status_code, range(24)))
    assert statuses == [200] * 24
    after = app.settled_hosts(time.time(), count=3)
    served = {h["replica"]: h["counts"]["served"] - served_before[h["replica"]] for h in after}
    assert served[holder] == 24 and sum(served.values()) == 24
    assert sum(h["counts"]["loads"] for h in after) == len(MODELS)  # no second copy


def test_streaming_and_errors_are_the_gateways(app: App) -> None:
    with app.client.stream(
        "POST",
        f"{app.url}/v1/chat/completions",
        json={"model": "delta", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert all(c["model"] == "delta" for c in chunks) and len(chunks) >= 4

    missing = app.chat("no-such-model")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    bad = app.client.post(
        f"{app.url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_removing_a_node_under_load_ends_every_request(app: App) -> None:
    hosts = app.settled_hosts(0, count=3)
    victim = next(h for h in hosts if "alpha" in h["ready"])
    node = next(n for n in app.nodes if n.node_id == victim["node"])
    lost_models = set(victim["ready"])
    deadline = time.monotonic() + 8.0

    def client_loop(model: str) -> list[tuple[int, str]]:
        outcomes = []
        with httpx.Client(timeout=TIMEOUT) as client:
            for _ in range(40):  # bounded in count and in time
                if time.monotonic() > deadline:
                    break
                response = client.post(
                    f"{app.url}/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "x"}]},
                )
                outcomes.append((response.status_code, response.text))
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(len(MODELS)) as pool:
        futures = [pool.submit(client_loop, m) for m in MODELS]
        time.sleep(1.0)  # let load build up before the node goes (not a synchronisation)
        app.cluster.remove_node(node, allow_graceful=False)
        results = [f.result(timeout=TIMEOUT * 2) for f in futures]  # none hangs
    outcomes = [o for r in results for o in r]
    assert outcomes
    for status, text in outcomes:
        if status != 200:  # a clear error, never a hang or an empty answer
            assert status in (502, 503), (status, text)
            assert json.loads(text)["error"]["message"], text
    # The models the lost node held are served elsewhere afterwards.
    for model in sorted(lost_models):
        response = app.chat(model)
        assert response.status_code == 200, response.text
    remaining = app.settled_hosts(time.time() - 0.5, count=2)
    assert victim["replica"] not in {h["replica"] for h in remaining}


def test_shutdown_leaves_no_model_process(app: App) -> None:
    assert pids_with(app.marker)  # the models of the remaining hosts run
    serve.shutdown()
    wait_for(lambda: not pids_with(app.marker), "every model process to exit", timeout=30)
