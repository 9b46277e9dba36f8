"""The training memory plan (``classifier.memory``) follows the LoRA configuration on every card profile."""

import dataclasses

import pytest

from kagflow.classifier.config import TrainConfig
from kagflow.classifier.memory import GEMMA2_9B, PROJECTIONS, LoraShape, MemoryPlanError, ModelShape
from kagflow.classifier.recipe import recipe_for_device

SEED_LORA = LoraShape(16, ("q_proj", "k_proj", "v_proj"), 16, 0.05)
WINNERS_LORA = LoraShape(64, PROJECTIONS, 0, 0.05)  # r 64, all seven projections, nothing frozen
# (memory GiB, capability) of the profiles recipe.py distinguishes: T4, a 16 GB bf16 card (the bench's 15 GiB cap),
# 24 GB, A100 40 GB, H100 80 GB
PROFILES = ((15.0, (7, 5)), (15.0, (9, 0)), (23.6, (8, 9)), (39.4, (8, 0)), (79.0, (9, 0)))


@pytest.mark.parametrize("family", ["gemma2", "llama", "qwen3"])
@pytest.mark.parametrize("lora", [LoraShape(4, ("q_proj", "v_proj"), 1), LoraShape(8, PROJECTIONS, 0),
                                  LoraShape(2, ("o_proj", "down_proj"), 1)])
def test_trainable_parameters_are_peft_s(family, lora):
    """The plan's P is what peft trains: the LoRA matrices of the layers from freeze_layers on plus the score head."""
    import transformers
    from peft import get_peft_model

    from kagflow.classifier.model import lora_config
    from kagflow.classifier.tiny import FAMILIES

    config = transformers.AutoConfig.for_model(FAMILIES[family][0], vocab_size=64, hidden_size=32,
                                               intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                                               num_key_value_heads=2, head_dim=8, num_labels=3, pad_token_id=0)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    pm = get_peft_model(model, lora_config(model, r=lora.r, alpha=8, dropout=0.0, target_modules=list(lora.targets),
                                           freeze_layers=lora.freeze_layers))
    trainable = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    assert lora.params(ModelShape.of(config)) == trainable


def test_the_plan_changes_with_r_targets_and_freezing():
    """Each step of the winners' LoRA costs memory, so fewer layers keep their activations on the same card: the
    unchecked count (or, where none is left, the peak) strictly follows r, then the targets, then the freezing."""
    steps = [SEED_LORA, dataclasses.replace(SEED_LORA, r=64), dataclasses.replace(SEED_LORA, r=64, targets=PROJECTIONS),
             WINNERS_LORA]
    for mem, cap in PROFILES:
        plans = [recipe_for_device(mem, cap, lora=lora, max_length=1024).memory_plan for lora in steps]
        params = [p.trainable_params for p in plans]
        assert params == sorted(set(params)), (mem, cap, params)  # strictly more trainable parameters each step
        state = [dict(p.terms)["lora state"] for p in plans]
        assert state == sorted(set(state)), (mem, cap, state)
        if plans[0].checkpointing:
            keep = [p.unchecked for p in plans]
            assert keep[0] > keep[-1] and keep == sorted(keep, reverse=True), (mem, cap, keep)
        else:  # the big card trains without checkpointing: the peak grows instead
            peaks = [p.peak_gib for p in plans]
            assert peaks == sorted(set(peaks)), (mem, cap, peaks)
        assert [p.lora_layers for p in plans] == [26, 26, 26, 42]


def test_winners_lora_fits_the_16gb_card_that_ran_out_of_memory():
    """bench: r 64, all seven projections, nothing frozen on the 15 GiB cap ran out of memory with the shipped recipe
    (14.62 GiB allocated: 8 unchecked layers sized for r 16 on q/k/v). The plan keeps its peak under the 14.7 GiB
    target with few unchecked layers, in bf16 and on the T4 profile."""
    for cap in ((9, 0), (7, 5)):
        old = recipe_for_device(15.0, cap, lora=SEED_LORA, max_length=1024)
        new = recipe_for_device(15.0, cap, lora=WINNERS_LORA, max_length=1024)
        plan = new.memory_plan
        assert (old.uncheckpointed_layers, old.uncheckpointed_layers_eager) == (8, 4)  # the measured seed-LoRA plan
        assert new.gradient_checkpointing and new.uncheckpointed_layers < old.uncheckpointed_layers
        assert new.uncheckpointed_layers_eager <= new.uncheckpointed_layers
        assert plan.peak_gib <= plan.limit_gib < 14.7, plan
        assert plan.trainable_params == WINNERS_LORA.params(GEMMA2_9B) and round(plan.trainable_params / 1e6) == 216
        assert new.train_max_tokens == plan.tokens >= 1024


def test_the_budget_halves_before_refusing_and_the_refusal_names_every_term():
    """A card where even every layer checkpointed does not fit at 4,096 tokens gets a smaller micro-batch; one where
    nothing fits is refused with the terms, the card and the single changes that would fit."""
    tight = recipe_for_device(12.0, (7, 5), lora=WINNERS_LORA, max_length=1024)
    assert tight.train_max_tokens < 4096 and tight.memory_plan.peak_gib <= tight.memory_plan.limit_gib
    with pytest.raises(MemoryPlanError) as err:
        recipe_for_device(11.0, (7, 5), lora=WINNERS_LORA, max_length=1024)
    text = str(err.value)
    for term in ("weights", "lora state", "checkpointed inputs", "misc", "lora_r 64", "7 target(s)", "42 layer(s)",
                 "9.25 GiB", "freeze_layers = 16", "optim_type"):
        assert term in text, (term, text)
    # without an explicit LoRA (inference asks for a recipe) nothing is refused
    assert recipe_for_device(10.0, (7, 5)).gradient_checkpointing


def test_training_recipe_follows_the_train_config():
    """``train.training_recipe`` sizes the plan from [train]'s LoRA: a run's recipe changes with lora_r, the targets
    and freeze_layers (fails if the run's config is not passed on)."""
    import transformers

    from kagflow.classifier.model import ModelTraits
    from kagflow.classifier.train import training_recipe

    config = transformers.Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_labels=3)
    traits = ModelTraits.of(config)
    assert traits.shape == ModelShape.of(config) and traits.shape.layers == 4
    base = TrainConfig(lora_r=4, target_modules=("q_proj",), freeze_layers=1)
    plans = [training_recipe(cfg, traits).memory_plan for cfg in
             (base, dataclasses.replace(base, lora_r=8), dataclasses.replace(base, target_modules=PROJECTIONS),
              dataclasses.replace(base, freeze_layers=0))]
    assert len({p.trainable_params for p in plans}) == 4
    assert [p.lora_layers for p in plans] == [3, 3, 3, 4]
