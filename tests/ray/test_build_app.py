"""Building the Ray Serve application: options checked on the driver, before anything deploys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("SWAPCORE_REQUIRE_RAY") != "1":
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the ray extra)")

from swapcore import AffinityPolicy, ConfigError
from swapcore.adapters.ray import SwapcoreRequestRouter, app, build_app
from swapcore.adapters.ray._router import unpack_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ray" / "config.yaml"


def deployments(application: object) -> dict[str, object]:
    """The deployments of a built application, by name (the front binds the hosts)."""
    front = application._bound_deployment  # type: ignore[attr-defined]
    host = front.init_args[0]._bound_deployment
    return {front.name: front, host.name: host}


def test_the_example_builds_three_hosts_behind_one_front() -> None:
    built = deployments(build_app(str(EXAMPLE), hosts=3, policy=AffinityPolicy(spill_queue=4)))
    host = built["SwapcoreHost"]
    assert host.num_replicas == 3  # type: ignore[attr-defined]
    router = host._deployment_config.request_router_config  # type: ignore[attr-defined]
    assert router.request_router_class.endswith("SwapcoreRequestRouter")
    assert unpack_policy(router.request_router_kwargs["policy"]).spill_queue == 4
    assert built["SwapcoreFront"].num_replicas == 1  # type: ignore[attr-defined]
    assert SwapcoreRequestRouter.__name__ in router.request_router_class


def test_serve_runs_builder_takes_string_arguments() -> None:
    built = deployments(
        app(
            {
                "config": str(EXAMPLE),
                "hosts": "2",
                "policy": "affinity:spill=3",
                "max_replicas_per_node": "1",
            }
        )
    )
    host = built["SwapcoreHost"]
    assert host.num_replicas == 2  # type: ignore[attr-defined]
    assert host._deployment_config.max_ongoing_requests == 1024  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "config=FILE is required"),
        ({"config": str(EXAMPLE), "hosts": "0"}, "hosts: must be a whole number >= 1"),
        ({"config": str(EXAMPLE), "host": "2"}, "unknown argument(s) ['host']"),
        ({"config": str(EXAMPLE), "policy": "random"}, "unknown cluster policy"),
        ({"config": str(EXAMPLE), "start_port": "x"}, "start_port: must be a whole number"),
        ({"config": str(EXAMPLE), "allow_unsupported": "maybe"}, "allow_unsupported"),
        ({"config": "/no/such/config.yaml"}, "/no/such/config.yaml"),
    ],
)
def test_bad_arguments_are_errors_that_name_them(args: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        app(args)
    assert message in str(caught.value)


def test_an_invalid_config_fails_before_anything_deploys(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  a:\n    cmd: x\n    proxy: 7\n")
    with pytest.raises(ConfigError, match=r"models\.a"):
        build_app(str(config), hosts=2)
    with pytest.raises(ConfigError, match="policy"):
        build_app(str(EXAMPLE), policy="affinity")  # type: ignore[arg-type]


def test_hosts_can_autoscale_with_rays_own_config() -> None:
    built = deployments(
        build_app(
            str(EXAMPLE),
            host_options={"autoscaling_config": {"min_replicas": 1, "max_replicas": 4}},
        )
    )
    config = built["SwapcoreHost"]._deployment_config  # type: ignore[attr-defined]
    assert config.autoscaling_config.min_replicas == 1
    assert config.autoscaling_config.max_replicas == 4
