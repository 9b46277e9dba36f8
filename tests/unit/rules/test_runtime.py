"""The inference run-time estimate on Kaggle's T4 x2 (``rules.runtime``): its arithmetic and the refusal."""

import pytest

from kagflow.errors import KagflowError
from kagflow.rules import runtime
from kagflow.rules.kaggle import COMPETITION_RUN_S

COMPETITION = "llm-classification-finetuning"


def _estimate(members, **kw):
    return runtime.kaggle_inference_run_time(COMPETITION, "NvidiaTeslaT4", members=members,
                                             **{"tta": True, "max_length": 3072, **kw})


def test_mean_tokens_follow_the_length_fit():
    """E[min(L, cap)] grows with the cap toward the fit's mean (~650 + the template) and never passes the cap."""
    means = [runtime.mean_tokens_per_row(n) for n in (256, 1024, 2048, 3072, 100000)]
    assert means == sorted(means) and means[0] <= 256
    assert 680 < means[-1] < 700  # exp(ln 510 + 0.7^2 / 2) = 650, + 40 template tokens


def test_one_adapter_fits_nine_hours_and_five_are_refused_with_the_numbers():
    one = _estimate(1)
    assert one.seconds < COMPETITION_RUN_S and "25,000 rows x 2 view(s)" in one.arithmetic
    # the arithmetic is what it says: tokens / rate + setup + load
    tokens = 25000 * 2 * runtime.mean_tokens_per_row(3072)
    rate = runtime.h200_rate("4bit", 3072) / runtime.T4_SLOWER * runtime.TWO_T4_SPEEDUP
    assert one.seconds == pytest.approx(runtime.SETUP_S + runtime.LOAD_S + tokens / rate)
    assert _estimate(1, tta=False).seconds < one.seconds and _estimate(1, max_length=1024).seconds < one.seconds
    five = _estimate(5)
    with pytest.raises(KagflowError) as err:
        runtime.refuse_past_timeout(five, COMPETITION_RUN_S, name="infer", estimate_for=_estimate)
    text = f"{err.value.message} {err.value.context} {err.value.hint}"
    assert "would not finish in 9.0 h" in text and "5 adapter(s) x 25,000 rows" in text and "M tokens" in text
    fits = runtime.most_members(COMPETITION_RUN_S, _estimate)
    assert 1 <= fits < 5 and f"at most {fits} adapter(s)" in text
    assert _estimate(fits).seconds <= COMPETITION_RUN_S < _estimate(fits + 1).seconds
    runtime.refuse_past_timeout(one, COMPETITION_RUN_S, name="infer", estimate_for=_estimate)  # fits: no refusal


def test_tuned_members_fit_two_at_3072_and_three_are_refused():
    """Each member runs at the single adapter's rate (the tuned path): 2 x 4-bit at 3,072 with TTA on T4 x2 is 7.1 h
    (bench/RESULTS.md), 3 is 10.6 h, refused; averaged LoRA (``ensemble = "average_lora"``) is one pass."""
    one, two, three = _estimate(1), _estimate(2), _estimate(3)
    passes = one.seconds - runtime.SETUP_S - runtime.LOAD_S
    assert two.seconds == pytest.approx(runtime.SETUP_S + 2 * (runtime.LOAD_S + passes))  # no untuned factor
    assert "= 7.1 h" in two.arithmetic and "= 10.6 h" in three.arithmetic
    runtime.refuse_past_timeout(two, COMPETITION_RUN_S, name="infer", estimate_for=_estimate)
    with pytest.raises(KagflowError) as err:
        runtime.refuse_past_timeout(three, COMPETITION_RUN_S, name="infer", estimate_for=_estimate)
    assert "at most 2 adapter(s)" in err.value.hint and 'ensemble = "average_lora"' in err.value.hint
    averaged = _estimate(3, ensemble="average_lora")
    assert averaged.seconds == pytest.approx(one.seconds) and "3 adapter(s) averaged into 1" in averaged.arithmetic
    assert _estimate(2, quantization="8bit").seconds > _estimate(1, quantization="8bit").seconds * 1.9  # 8-bit too


def test_no_estimate_without_a_known_test_size_or_t4s():
    assert runtime.kaggle_inference_run_time("titanic", "NvidiaTeslaT4", members=5, tta=True, max_length=3072) is None
    assert runtime.kaggle_inference_run_time(COMPETITION, "NvidiaH100", members=5, tta=True, max_length=3072) is None


def test_the_rate_follows_the_quantization_kernel_and_max_length_measured():
    """8-bit's weight-only int8 (int8_kernel's default) was measured 1.15x the 4-bit path at 3,072 on the H200;
    LLM.int8 (int8_kernel = "llm_int8") 0.43x, so it takes longer than 4-bit; each max_length uses the measured
    point nearest it. A guard that priced LLM.int8 at weight-only's rate would let a 2.7x longer run through."""
    assert runtime.h200_rate("4bit", 2048) == runtime.H200_T4_CONFIG_TOKENS_PER_S
    assert runtime.h200_rate("4bit", 3000) == 21964.0 and runtime.h200_rate("8bit", 1024) == 25188.0
    assert runtime.h200_rate("8bit", 3072, "llm_int8") == 9392.0
    assert runtime.h200_rate("4bit", 3072, "llm_int8") == 21964.0  # the kernel is 8-bit's only
    four, eight = _estimate(1), _estimate(1, quantization="8bit")
    llm = _estimate(1, quantization="8bit", int8_kernel="llm_int8")
    assert eight.seconds < four.seconds < llm.seconds
    assert llm.seconds > 2 * (four.seconds - runtime.SETUP_S - runtime.LOAD_S)
    assert f"{9392.0 / runtime.T4_SLOWER:,.0f} tok/s each" in llm.arithmetic
    assert f"{25188.0 / runtime.T4_SLOWER:,.0f} tok/s each" in eight.arithmetic
