"""Configs of the LLM trainer: help texts, validation of invalid combinations (spec §8), YAML/JSON/CLI round-trip."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torch")

from klsim_llm import config as C  # noqa: E402

pytestmark = pytest.mark.llm

ALL_SECTIONS = [
    C.ModelConfig,
    C.KLConfig,
    C.ReferenceConfig,
    C.ChunkConfig,
    C.DistConfig,
    C.LogConfig,
    C.RolloutConfig,
    C.OptimConfig,
    C.TaskConfig,
    *C.METHOD_CONFIGS.values(),
    C.TrainConfig,
]


@pytest.mark.parametrize("cls", ALL_SECTIONS, ids=lambda c: c.__name__)
def test_every_field_has_help(cls):
    for f in dataclasses.fields(cls):
        assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help text"


@pytest.mark.parametrize("cls", list(C.METHOD_CONFIGS.values()), ids=lambda c: c.__name__)
def test_method_configs_cite_a_paper(cls):
    helps = " ".join(f.metadata["help"] for f in dataclasses.fields(cls))
    assert "arXiv:" in helps


@pytest.mark.parametrize("method", sorted(C.METHOD_CONFIGS))
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_yaml_json(tmp_path, method, suffix):
    ref = "frozen_copy"
    cfg = C.config_from_dict({"method": method, "reference": {"mode": ref}, "kl": {"beta": 0.2}, "steps": 7})
    path = C.dump_config(cfg, tmp_path / f"cfg{suffix}")
    back = C.load_config(path)
    assert back == cfg
    assert type(back.algo) is C.METHOD_CONFIGS[method]
    assert back.steps == 7 and back.kl.beta == 0.2


def test_cli_overrides_and_unknown_keys(tmp_path):
    path = C.dump_config(C.TrainConfig(), tmp_path / "c.yaml")
    cfg = C.load_config(
        path, ["kl.beta=0.3", "algo.objective=grpo", "rollout.temperature=0.7", "log.progress=false"]
    )
    assert cfg.kl.beta == 0.3 and cfg.algo.objective == "grpo" and cfg.rollout.temperature == 0.7
    assert cfg.log.progress is False
    with pytest.raises(ValueError, match="did you mean 'beta'"):
        C.load_config(path, ["kl.betta=0.3"])
    with pytest.raises(ValueError, match="key.sub=value"):
        C.apply_overrides({}, ["kl.beta"])
    with pytest.raises(ValueError, match="does not exist"):
        C.load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"method": "dpo", "algo": {"objective": "fdpo", "loss_type": "bco_pair"}}, "difference-based"),
        ({"method": "fdpo", "algo": {"loss_type": "apo_zero"}}, "difference-based"),
        ({"kl": {"placement": "both"}}, "allow_double_kl"),
        ({"kl": {"beta": 0.0}, "reference": {"mode": "ema"}}, "moves the reference"),
        (
            {"kl": {"beta": 0.0}, "reference": {"mode": "hard_reset", "update_every": 5}},
            "moves the reference",
        ),
        ({"kl": {"beta": 0.1}, "reference": {"mode": "none"}}, "needs a reference source"),
        (
            {"method": "dpo", "algo": {"objective": "tdpo1"}, "reference": {"mode": "precomputed"}},
            "full reference distributions",
        ),
        ({"reference": {"mode": "adapter_disabled"}}, "PEFT"),
        (
            {
                "model": {"from_config": {"model_type": "llama"}, "peft_lora_r": 4},
                "reference": {"mode": "ema"},
            },
            "ema_space",
        ),
        ({"reference": {"mode": "soup", "soup_checkpoints": ["a"]}}, ">= 2"),
        ({"reference": {"mode": "elastic_reset"}}, "update_every > 0"),
        ({"method": "pg", "algo": {"objective": "ppo"}}, "pg.objective"),
        ({"method": "ppo", "algo": {"gae_lambda": 0.9}}, "Monte-Carlo"),
        ({"method": "nash_mp", "kl": {"beta": 0.0}, "reference": {"mode": "none"}}, "needs a reference"),
        ({"rollout": {"temperature": 0.0}}, "temperature"),
        ({"model": {"name_or_path": "x", "from_config": {"model_type": "llama"}}}, "exactly one"),
        ({"method": "sft"}, "method"),
        ({"kl": {"aggregation": "token_mean_globl"}}, "did you mean 'token_mean"),
        (
            {
                "model": {
                    "from_config": {"model_type": "llama"},
                    "dtype": "float64",
                    "autocast_bf16_cpu": True,
                }
            },
            "autocast_bf16_cpu=true needs model.dtype='float32'",
        ),
    ],
)
def test_invalid_combinations_raise(data, match):
    with pytest.raises(ValueError, match=match):
        C.config_from_dict(data)


def test_valid_combinations_pass():
    C.config_from_dict({"kl": {"beta": 0.0}, "reference": {"mode": "none"}})
    C.config_from_dict({"kl": {"placement": "both", "allow_double_kl": True}})
    C.config_from_dict(
        {"method": "fdpo", "algo": {"f_divergence": "alpha", "f_alpha": 0.3, "loss_type": "hinge"}}
    )
    C.config_from_dict(
        {
            "model": {"from_config": {"model_type": "llama"}, "peft_lora_r": 4},
            "reference": {"mode": "adapter_disabled"},
        }
    )
