"""Before an inference push (``workflow.kernel.guard_run_time``): an ensemble that would not finish is refused."""

from types import SimpleNamespace

import pytest

from kagflow.classifier.config import InferConfig
from kagflow.errors import KagflowError
from kagflow.workflow.kernel import guard_run_time

CONFIG = SimpleNamespace(infer=InferConfig(max_length=3072, tta=True),
                         project=SimpleNamespace(competition="llm-classification-finetuning"))


def test_five_folds_are_refused_one_adapter_is_pushed_and_force_warns():
    lines = []
    guard_run_time(CONFIG, "infer", "NvidiaTeslaT4", 32400, members=1, log=lines.append)
    assert lines and lines[0].startswith("inference run time: 1 adapter(s)")
    with pytest.raises(KagflowError, match="would not finish in 9.0 h") as err:
        guard_run_time(CONFIG, "infer", "NvidiaTeslaT4", 32400, members=5, log=lines.append)
    assert "5 adapter(s) x 25,000 rows x 2 view(s)" in err.value.context and "--force" in err.value.hint
    guard_run_time(CONFIG, "infer", "NvidiaTeslaT4", 32400, members=5, force=True, log=lines.append)
    assert lines[-1].startswith("warning: inference run time past the 32400 s timeout")


def test_ensemble_average_lora_prices_five_folds_as_one_pass():
    """[infer] ensemble = "average_lora" is one adapter's load and pass: five folds are pushed (ignored: refused)."""
    lines = []
    averaged = SimpleNamespace(infer=InferConfig(max_length=3072, tta=True, ensemble="average_lora"),
                               project=CONFIG.project)
    guard_run_time(averaged, "infer", "NvidiaTeslaT4", 32400, members=5, log=lines.append)
    assert "5 adapter(s) averaged into 1 (average_lora)" in lines[0] and "= 3.6 h" in lines[0]


def test_the_8bit_kernel_sets_the_price():
    """[infer] int8_kernel reaches the guard: two 8-bit members fit 9 h with the weight-only kernel (6.2 h) and are
    refused with LLM.int8's (16 h), which a guard reading only [infer] quantization would have let through."""
    def config(kernel):
        return SimpleNamespace(infer=InferConfig(max_length=3072, tta=True, quantization="8bit", int8_kernel=kernel),
                               project=CONFIG.project)

    lines = []
    guard_run_time(config("weight_only"), "infer", "NvidiaTeslaT4", 32400, members=2, log=lines.append)
    assert "2 adapter(s)" in lines[0] and "= 6.2 h" in lines[0]
    with pytest.raises(KagflowError, match="would not finish in 9.0 h") as err:
        guard_run_time(config("llm_int8"), "infer", "NvidiaTeslaT4", 32400, members=2, log=lines.append)
    assert "at most 1 adapter(s)" in err.value.hint
