"""GroupPlanner: llama-swap's group rules, errors and properties."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore import ConfigError, Group, GroupPlanner, SwapPlanner
from swapcore.planners import DEFAULT_GROUP

# --- Group -----------------------------------------------------------------------


def test_group_defaults_are_llama_swaps() -> None:
    group = Group(["a"])
    assert (group.swap, group.exclusive, group.persistent) == (True, True, False)


def test_group_members_normalised_to_tuple_in_order() -> None:
    assert Group(["b", "a", "c"]).members == ("b", "a", "c")
    assert Group(m for m in ("x", "y")).members == ("x", "y")
    assert Group(()).members == ()


def test_group_is_frozen_and_hashable() -> None:
    group = Group(["a"], swap=False)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        group.swap = True  # type: ignore[misc]
    assert group == Group(("a",), swap=False)
    assert hash(group) == hash(Group(("a",), swap=False))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ("qwen", "members must be a list of model names, not a string"),
        (b"qwen", "members must be a list of model names, not a string"),
        (3, "members must be a list of model names, got int"),
        ({"a": 1}, "members must be a list of model names, got dict"),
        (["a", ""], "members must be non-empty strings, got ''"),
        (["a", 3], "members must be non-empty strings, got 3"),
        (["a", None], "members must be non-empty strings, got None"),
        (["a", "b", "a"], "duplicate member 'a'"),
    ],
)
def test_group_rejects_bad_members(members: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Group(members)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize("flag", ["swap", "exclusive", "persistent"])
def test_group_flags_must_be_bools(flag: str) -> None:
    with pytest.raises(ConfigError) as info:
        Group(["a"], **{flag: "false"})  # type: ignore[arg-type]
    assert str(info.value) == f"{flag} must be true or false, got 'false'"


def test_group_from_config_defaults_and_values() -> None:
    assert Group.from_config("g", {}) == Group(())
    assert Group.from_config("g", {"members": ["a", "b"], "exclusive": False}) == Group(
        ["a", "b"], exclusive=False
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"members": "x"}, "group 'x': members must be a list of model names, not a string"),
        ({"members": ["a", "a"]}, "group 'x': duplicate member 'a'"),
        ({"members": ["a"], "swap": 1}, "group 'x': swap must be true or false, got 1"),
        (
            {"members": ["a"], "exlusive": False},
            "group 'x': unknown key 'exlusive' (expected one of members, swap, exclusive, "
            "persistent)",
        ),
        (["a"], "group 'x': expected a mapping, got list"),
    ],
)
def test_group_from_config_errors_name_the_group(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Group.from_config("x", raw)  # type: ignore[arg-type]
    assert str(info.value) == message


# --- GroupPlanner construction ---------------------------------------------------------


def test_planner_is_a_swap_planner() -> None:
    assert isinstance(GroupPlanner({}), SwapPlanner)


def test_model_in_two_groups_names_model_and_both_groups() -> None:
    with pytest.raises(ConfigError) as info:
        GroupPlanner({"g1": Group(["a", "b"]), "g2": Group(["c", "b"])})
    assert str(info.value) == "model 'b' is in more than one group: 'g1' and 'g2'"


def test_raw_config_mappings_are_accepted_and_errors_name_the_group() -> None:
    planner = GroupPlanner({"chat": {"members": ["a", "b"]}, "emb": Group(["e"])})
    assert planner.groups["chat"] == Group(["a", "b"])
    with pytest.raises(ConfigError, match=r"^group 'x': members must be a list of model names"):
        GroupPlanner({"x": {"members": "qwen"}})
    with pytest.raises(ConfigError, match=r"^group 'x': duplicate member 'a'$"):
        GroupPlanner({"x": {"members": ["a", "a"]}})


@pytest.mark.parametrize(
    ("groups", "models", "message"),
    [
        ({"": Group(["a"])}, (), "group names must be non-empty strings, got ''"),
        ({1: Group(["a"])}, (), "group names must be non-empty strings, got 1"),
        ({"g": ["a"]}, (), "group 'g': expected a Group or a mapping, got list"),
        (["g"], (), "groups must be a mapping of names to groups, got list"),
        ({}, "abc", "models must be a collection of model names, not a string"),
        ({}, ["a", ""], "models must be non-empty strings, got ''"),
        ({}, ["a", 2], "models must be non-empty strings, got 2"),
    ],
)
def test_planner_construction_errors(groups: object, models: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        GroupPlanner(groups, models=models)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_groups_mapping_is_read_only_and_in_declaration_order() -> None:
    planner = GroupPlanner({"b": Group(["x"]), "a": Group(["y"])}, models=["z", "x"])
    assert list(planner.groups) == ["b", "a", DEFAULT_GROUP]
    with pytest.raises(TypeError):
        planner.groups["c"] = Group(())  # type: ignore[index]


# --- the default group -------------------------------------------------------------


def test_no_groups_means_one_default_group_holding_every_model() -> None:
    planner = GroupPlanner({}, models=["a", "b", "c", "a"])
    assert dict(planner.groups) == {DEFAULT_GROUP: Group(["a", "b", "c"])}
    assert planner.eviction_for("a", ["b", "c"]) == ("b", "c")


def test_default_group_absent_when_nothing_is_ungrouped() -> None:
    planner = GroupPlanner({"g": Group(["a"])}, models=["a"])
    assert list(planner.groups) == ["g"]
    assert GroupPlanner({}).groups == {}


def test_ungrouped_models_join_the_default_group_in_given_order() -> None:
    planner = GroupPlanner({"g": Group(["a"], exclusive=False)}, models=["z", "a", "y"])
    assert planner.groups[DEFAULT_GROUP] == Group(["z", "y"])
    assert [planner.group_of(m) for m in ("a", "z", "y")] == ["g", DEFAULT_GROUP, DEFAULT_GROUP]


def test_undeclared_models_are_treated_as_default_members() -> None:
    planner = GroupPlanner({"g": Group(["a", "b"]), "p": Group(["p"], persistent=True)})
    assert planner.group_of("never-declared") == DEFAULT_GROUP
    # An unknown target is in the (exclusive, swapping) default group...
    assert planner.eviction_for("new", ["a", "p", "other"]) == ("a", "other")
    # ...and an unknown running model is a non-persistent default member.
    assert planner.eviction_for("a", ["b", "ghost", "p"]) == ("b", "ghost")
    # Nothing is recorded: the planner is unchanged by the queries.
    assert DEFAULT_GROUP not in planner.groups


def test_declared_default_group_sets_the_default_flags() -> None:
    planner = GroupPlanner(
        {DEFAULT_GROUP: Group(["d"], swap=False, exclusive=False), "g": Group(["a", "b"])},
        models=["u", "a"],
    )
    assert list(planner.groups) == [DEFAULT_GROUP, "g"]
    assert planner.groups[DEFAULT_GROUP] == Group(["d", "u"], swap=False, exclusive=False)
    assert planner.eviction_for("u", ["d", "a", "stranger"]) == ()
    assert planner.eviction_for("a", ["d", "b", "stranger"]) == ("d", "b", "stranger")


def test_declared_default_group_members_count_as_grouped() -> None:
    with pytest.raises(ConfigError, match="model 'a' is in more than one group"):
        GroupPlanner({DEFAULT_GROUP: Group(["a"]), "g": Group(["a"])})


# --- the eviction rules --------------------------------------------------------------

# Target g1 in group G, with G's sibling g2 and h1 of another group H running.
# (G.swap, G.exclusive, H.persistent) -> evict
FLAG_MATRIX = [
    (True, True, False, ("g2", "h1")),
    (True, True, True, ("g2",)),
    (True, False, False, ("g2",)),  # non-exclusive: other groups are never touched
    (True, False, True, ("g2",)),
    (False, True, False, ("h1",)),
    (False, True, True, ()),
    (False, False, False, ()),
    (False, False, True, ()),
]


@pytest.mark.parametrize(("swap", "exclusive", "persistent", "evict"), FLAG_MATRIX)
def test_flag_matrix(swap: bool, exclusive: bool, persistent: bool, evict: tuple[str, ...]) -> None:
    planner = GroupPlanner(
        {
            "G": Group(["g1", "g2"], swap=swap, exclusive=exclusive),
            "H": Group(["h1", "h2"], persistent=persistent),
        }
    )
    assert planner.eviction_for("g1", ["g2", "h1"]) == evict


def _scenario_planner() -> GroupPlanner:
    return GroupPlanner(
        {
            "chat": Group(["llama", "qwen"]),  # swap, exclusive
            "tools": Group(["coder", "vision"], swap=False),  # side by side, exclusive
            "always": Group(["embed", "rerank"], swap=False, exclusive=False, persistent=True),
            "side": Group(["tts", "stt"], exclusive=False),  # swap, non-exclusive
        },
        models=["solo"],
    )


SCENARIOS = [
    # (target, running, evict, why)
    ("qwen", ["llama"], ("llama",), "same swap group stops the sibling"),
    ("qwen", ["qwen", "llama"], ("llama",), "the target itself is never evicted"),
    ("vision", ["coder"], (), "swap=false group keeps siblings"),
    ("coder", ["llama", "coder"], ("llama",), "exclusive stops other groups"),
    ("llama", ["embed", "rerank", "coder"], ("coder",), "persistent group survives"),
    ("llama", ["tts"], ("tts",), "exclusive stops a non-persistent non-exclusive group"),
    ("tts", ["llama", "coder", "embed"], (), "non-exclusive target never unloads others"),
    ("stt", ["tts", "llama"], ("tts",), "non-exclusive swap group still swaps inside"),
    ("embed", ["rerank", "llama", "tts"], (), "non-exclusive, non-swap: nothing stops"),
    ("solo", ["llama", "embed", "tts"], ("llama", "tts"), "default group is exclusive"),
    ("llama", ["solo"], ("solo",), "default group is not persistent"),
    ("llama", [], (), "nothing running, nothing to stop"),
]


@pytest.mark.parametrize(("target", "running", "evict", "why"), SCENARIOS)
def test_scenarios(target: str, running: list[str], evict: tuple[str, ...], why: str) -> None:
    assert _scenario_planner().eviction_for(target, running) == evict, why


def test_evict_keeps_running_order_without_duplicates() -> None:
    planner = _scenario_planner()
    running = ["tts", "embed", "qwen", "coder", "tts", "qwen", "llama"]
    assert planner.eviction_for("llama", running) == ("tts", "qwen", "coder")
    assert planner.eviction_for("solo", ("coder", "llama")) == ("coder", "llama")


def test_eviction_for_returns_a_tuple_and_leaves_running_alone() -> None:
    running = ["llama", "coder"]
    result = _scenario_planner().eviction_for("qwen", running)
    assert isinstance(result, tuple)
    assert running == ["llama", "coder"]


@pytest.mark.parametrize(
    ("target", "model", "reason"),
    [
        ("qwen", "llama", "same group 'chat' (swap)"),
        ("llama", "coder", "'chat' is exclusive, 'tools' is not persistent"),
        ("solo", "tts", "'(default)' is exclusive, 'side' is not persistent"),
        ("llama", "embed", None),
        ("tts", "llama", None),
        ("llama", "llama", None),
    ],
)
def test_eviction_reason(target: str, model: str, reason: str | None) -> None:
    assert _scenario_planner().eviction_reason(target, model) == reason


# --- logging -----------------------------------------------------------------------


def test_eviction_for_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _scenario_planner().eviction_for("qwen", ["llama", "coder"])
    assert caplog.records == []


def test_on_swap_start_logs_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swapcore.groups")
    planner = _scenario_planner()
    planner.on_swap_start("qwen", ["llama", "embed", "coder"])
    planner.on_swap_start("embed", [])
    assert [(r.name, r.levelno) for r in caplog.records] == [("swapcore.groups", logging.INFO)] * 2
    assert [r.getMessage() for r in caplog.records] == [
        "swap to 'qwen' (group 'chat'): evict 'llama', 'coder'",
        "swap to 'embed' (group 'always'): evict nothing",
    ]


def test_repr_lists_groups() -> None:
    assert repr(GroupPlanner({"g": Group(["a", "b"])}, models=["c"])) == (
        "GroupPlanner({'g': 2 members, '(default)': 1 members})"
    )


# --- properties ----------------------------------------------------------------------

MODELS = [f"m{i}" for i in range(8)]
GROUP_NAMES = ["g0", "g1", "g2", DEFAULT_GROUP]
flags = st.fixed_dictionaries(
    {"swap": st.booleans(), "exclusive": st.booleans(), "persistent": st.booleans()}
)


@st.composite
def configs(draw: st.DrawFn) -> tuple[dict[str, Group], list[str]]:
    """A random group config over MODELS, plus the models= list (some models left out)."""
    placement = draw(
        st.fixed_dictionaries({m: st.sampled_from([*GROUP_NAMES, None]) for m in MODELS})
    )
    groups: dict[str, Group] = {}
    for name in draw(st.permutations(GROUP_NAMES)):
        members = [m for m, where in placement.items() if where == name]
        if members or draw(st.booleans()):
            groups[name] = Group(draw(st.permutations(members)), **draw(flags))
    models = draw(st.lists(st.sampled_from(MODELS), unique=True))
    return groups, models


def oracle(groups: Mapping[str, Group], target: str, running: Sequence[str]) -> tuple[str, ...]:
    """llama-swap's group rules read literally, one running model at a time."""

    def group_of(model: str) -> tuple[str, Group]:
        for name, group in groups.items():
            if model in group.members:
                return name, group
        return DEFAULT_GROUP, groups.get(DEFAULT_GROUP, Group(()))

    g_name, g = group_of(target)
    evict: list[str] = []
    for model in running:
        if model == target or model in evict:
            continue
        h_name, h = group_of(model)
        if (h_name == g_name and g.swap) or (h_name != g_name and g.exclusive and not h.persistent):
            evict.append(model)
    return tuple(evict)


targets = st.sampled_from([*MODELS, "unknown"])
runnings = st.lists(st.sampled_from([*MODELS, "unknown", "ghost"]), max_size=12)


@given(config=configs(), target=targets, running=runnings)
def test_eviction_is_a_subset_of_running_and_never_the_target(
    config: tuple[dict[str, Group], list[str]], target: str, running: list[str]
) -> None:
    planner = GroupPlanner(config[0], models=config[1])
    evict = planner.eviction_for(target, running)
    assert set(evict) <= set(running)
    assert target not in evict
    assert len(set(evict)) == len(evict)
    assert list(evict) == sorted(evict, key=running.index)


@given(config=configs(), target=targets, running=runnings)
def test_agrees_with_the_oracle(
    config: tuple[dict[str, Group], list[str]], target: str, running: list[str]
) -> None:
    groups, models = config
    assert GroupPlanner(groups, models=models).eviction_for(target, running) == oracle(
        groups, target, running
    )


@given(
    models=st.lists(st.sampled_from(MODELS), unique=True),
    target=targets,
    running=st.lists(st.sampled_from([*MODELS, "unknown"]), unique=True),
)
def test_no_groups_is_one_model_at_a_time(
    models: list[str], target: str, running: list[str]
) -> None:
    planner = GroupPlanner({}, models=models)
    assert planner.eviction_for(target, running) == tuple(m for m in running if m != target)
