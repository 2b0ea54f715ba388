"""Pre-flight checks: what this machine cannot run is refused before anything loads, with advice."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lorakit.training import TrainConfig, preflight, train


def test_tf32_on_cpu_is_refused_before_anything_loads(tiny_model_dir, tmp_path):
    config = TrainConfig(model=str(tiny_model_dir), precision="tf32", device="cpu", output_dir=str(tmp_path / "r"))
    with pytest.raises(ValueError, match=r"precision='tf32' is a matmul mode of NVIDIA tensor cores.*'fp32'"):
        train(config)
    assert not (tmp_path / "r").exists()  # refused before anything was written or loaded


@pytest.mark.parametrize("native", [False, True])
def test_fp16_on_cpu_runs_and_warns_only_without_native_fp16(monkeypatch, native):
    """torch's CPU autocast takes float16 and GradScaler("cpu") scales the loss: allowed, warned if emulated."""
    monkeypatch.setattr(preflight, "cpu_has_native", lambda name: native)
    device, warnings = preflight.check_before_load(TrainConfig(precision="fp16", device="cpu"))
    assert device == "cpu"
    assert warnings == ([] if native else [preflight.cpu_emulation_warning("fp16")])
    four_bit = TrainConfig(quantization="nf4", bnb_4bit_compute_dtype="fp16", device="cpu")
    assert len(preflight.check_before_load(four_bit)[1]) == (0 if native else 1)


def test_bf16_on_a_cpu_without_native_bf16_warns_and_does_not_refuse(monkeypatch):
    monkeypatch.setattr(preflight, "cpu_has_native_bf16", lambda: False)
    device, warnings = preflight.check_before_load(TrainConfig(precision="bf16", device="cpu"))
    assert device == "cpu" and warnings == [preflight.BF16_CPU_WARNING]
    assert "several times slower" in warnings[0] and "precision='fp32'" in warnings[0]
    monkeypatch.setattr(preflight, "cpu_has_native_bf16", lambda: True)
    assert preflight.check_before_load(TrainConfig(precision="bf16", device="cpu"))[1] == []


def test_bf16_warning_reaches_the_summary(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "cpu_has_native_bf16", lambda: False)
    config = TrainConfig(
        model=str(tiny_model_dir),
        dataset=["a b c d"] * 4,
        precision="bf16",
        max_steps=1,
        eval_split=0.0,
        output_dir=str(tmp_path / "r"),
        device="cpu",  # the warning is about CPUs: on a GPU machine the run would go to the GPU
    )
    with pytest.warns(RuntimeWarning, match="without native bf16"):
        summary = train(config)
    assert summary.status == "completed" and summary.warnings == [preflight.BF16_CPU_WARNING]


def test_cpu_bf16_detection_reads_cpuinfo_flags():
    flags = open("/proc/cpuinfo").read()
    assert preflight.cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cpu_features_name_the_model_and_the_flags_that_decide_the_speeds():
    zen4 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n"
    assert preflight.cpu_features(zen4) == ("AMD EPYC 9R14 96-Core Processor", ["avx2", "avx512f", "avx512_bf16"])
    assert preflight.cpu_features("flags : fpu avx2\n") == ("unknown", ["avx2"])
    assert preflight.cpu_features("") == ("unknown", [])
    model, flags = preflight.cpu_features()  # this machine: the same answer cpu_has_native gives
    assert ("avx512_bf16" in flags or "amx_bf16" in flags) == preflight.cpu_has_native("bf16")
    assert ("avx512_fp16" in flags or "amx_fp16" in flags) == preflight.cpu_has_native("fp16")


def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="device='cuda' but torch sees no CUDA GPU"):
        preflight.check_before_load(TrainConfig(device="cuda"))


def test_quantization_without_bitsandbytes_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"quantization='nf4' needs bitsandbytes.*pip install bitsandbytes"):
        preflight.check_before_load(TrainConfig(quantization="nf4", device="cpu"))
    with pytest.raises(ValueError, match="optimizer='adamw_8bit' needs bitsandbytes"):
        preflight.check_before_load(TrainConfig(optimizer="adamw_8bit", device="cpu"))


def test_paged_optimizer_needs_a_gpu():
    with pytest.raises(ValueError, match="paged_adamw_8bit.*needs a GPU"):
        preflight.check_before_load(TrainConfig(optimizer="paged_adamw_8bit", device="cpu"))


def test_missing_target_module_lists_the_real_ones(tiny_model_dir, tmp_path):
    config = TrainConfig(
        model=str(tiny_model_dir), target_modules=["q_proj", "c_attn"], output_dir=str(tmp_path)
    )
    with pytest.raises(ValueError) as info:
        train(config)
    message = str(info.value)
    assert "'c_attn' is not a linear layer" in message and "q_proj" in message and "down_proj" in message


def test_regex_target_that_matches_nothing(tiny_model_dir, tmp_path):
    config = TrainConfig(model=str(tiny_model_dir), target_modules=r".*\.nothing", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="matches no layer"):
        train(config)


def test_sequence_longer_than_the_model_supports(tiny_model_dir, tmp_path):
    config = TrainConfig(model=str(tiny_model_dir), max_seq_length=4096, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"max_seq_length=4096 is longer.*max_position_embeddings=512"):
        train(config)


def test_prompts_longer_than_max_seq_length_are_explained(tiny_model_dir, tmp_path):
    config = TrainConfig(
        model=str(tiny_model_dir), dataset="builtin", max_seq_length=16, output_dir=str(tmp_path / "r"), max_steps=1
    )
    with pytest.raises(ValueError, match="longer than max_seq_length=16 tokens"):  # before loading (test_own_data)
        train(config)
    assert not (tmp_path / "r").exists()


def test_matmul_seconds_measures_each_precision_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    seconds = preflight.matmul_seconds(("fp32", "bf16", "fp16"), "cpu", tokens=16, d_in=32, d_out=48, repeats=2)
    assert list(seconds) == ["fp32", "bf16", "fp16"]
    assert all(0 < s < 10 for s in seconds.values())
    assert torch.get_num_threads() == threads
