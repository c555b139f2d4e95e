from pathlib import Path

import pytest

from lab.config.experiment import deep_merge, find_key_line, load_experiment
from lab.errors import ConfigError

SMOKE = Path(__file__).resolve().parents[2] / "experiments" / "smoke.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


BASE = """\
[experiment]
name = "t"

[services.postgres]
cpus = 1.0

[services.redis]
memory_mb = 128
"""


def test_smoke_experiment_variants_overlay_the_base() -> None:
    experiment = load_experiment(SMOKE)
    assert list(experiment.variants) == ["baseline", "optimized"]
    baseline = experiment.variants["baseline"].service_configs()["postgres"]
    optimized = experiment.variants["optimized"].service_configs()["postgres"]
    assert (baseline.memory_mb, optimized.memory_mb) == (512, 1024)
    assert optimized.command == ("-c", "shared_buffers=256MB")
    # untouched keys come from the base
    assert optimized.cpus == baseline.cpus == 1.0
    assert (
        experiment.variants["optimized"].service_configs()["redis"]
        == experiment.variants["baseline"].service_configs()["redis"]
    )


def test_default_images_are_the_labs_own(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, BASE))
    services = experiment.variants["baseline"].service_configs()
    assert services["postgres"].image == "ablab/postgres"
    assert services["redis"].image == "ablab/redis"


def test_service_specific_settings_are_validated(tmp_path: Path) -> None:
    text = HEAD + (
        "[services.mock_api]\nseed = 7\n[services.mock_api.upstreams.crm]\nlatency_median_ms = 80\n"
        'latency_p99_ms = 400\nrate_limit_rps = 50\n[services.inference]\nmodel = "int8"\nbatching = true\n'
    )
    services = load_experiment(write(tmp_path, text)).variants["baseline"].service_configs()
    assert list(services) == ["mock_api", "inference"]
    mock_api, inference = services["mock_api"], services["inference"]
    assert mock_api.image == "ablab/mock-api" and inference.image == "ablab/inference"
    assert mock_api.upstreams["crm"].rate_limit_rps == 50  # type: ignore[attr-defined]
    assert inference.batching is True  # type: ignore[attr-defined]


def test_deep_merge_merges_tables_and_replaces_values() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    assert deep_merge(base, {"a": {"c": {"d": 3}}, "e": [2]}) == {"a": {"b": 1, "c": {"d": 3}}, "e": [2]}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}


HEAD = '[experiment]\nname = "t"\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[services.postgres]\ncpu = 2\n", "services.postgres.cpu: unknown key"),
        (
            "[services.mysql]\ncpus = 1\n",
            "services.mysql: unknown service; expected one of: postgres, redis, mock_api, inference",
        ),
        ('[services.redis]\nmemory_mb = "lots"\n', "services.redis.memory_mb: input should be a valid integer"),
        ("[services.redis]\ncpus = -1\n", "services.redis.cpus: input should be greater than 0"),
        ("[services.redis]\n[variants.Bad]\n", "variants.Bad: a variant name is lowercase"),
        ("[services.redis]\n[variants.fast]\nservices.redis.memory_mb = 0\n", "variants.fast.services.redis.memory_mb"),
        ("[services.redis]\n[variants.fast]\npool = 3\n", "variants.fast.pool: unknown key"),
        ("[services.redis]\n[colour]\nx = 1\n", "colour: unknown key"),
        ("[services]\n", "services: expected a table of services"),
        ("[services.mock_api.upstreams.crm]\nlatency_median_ms = 90\nlatency_p99_ms = 10\n", "latency_p99_ms must not"),
        ("[services.mock_api.upstreams.sms]\nerror_rate = 0.1\n", "services.mock_api.upstreams.sms: unknown value"),
        ("[services.mock_api.upstreams.crm]\nerror_rate = 1.5\n", "upstreams.crm.error_rate: input should be less"),
        ("[services.inference]\nthreads = 0\n", "services.inference.threads: input should be greater"),
        ('[services.redis]\nimage = ""\n', "services.redis.image: string should have at least 1 character"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, HEAD + body)
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    message = caught.value.one_line()
    assert message.startswith(f"{path}:")
    assert expected in message
    assert "\n" not in message


def test_error_points_at_the_offending_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "\n[variants.fast]\nservices.redis.memory_mb = -5\n")
    with pytest.raises(ConfigError, match=r"exp.toml:11: variants.fast.services.redis.memory_mb"):
        load_experiment(path)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(write(tmp_path, "[experiment\nname="))


def test_unknown_variant_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_experiment(SMOKE).variant("fastest")
    assert caught.value.hint == "variants: baseline, optimized"


def test_find_key_line_handles_headers_and_dotted_keys() -> None:
    text = "[a]\nx = 1\n[b.c]\ny = 2\nz.w = 3\n"
    assert find_key_line(text, ("a", "x")) == 2
    assert find_key_line(text, ("b", "c")) == 3
    assert find_key_line(text, ("b", "c", "y")) == 4
    assert find_key_line(text, ("b", "c", "z", "w")) == 5
