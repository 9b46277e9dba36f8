"""CPU tests for the classifier's fast paths: kagflow.classifier.recipe, batching, fit, dequant, predict."""

import math
import random
from dataclasses import replace

import pytest
import torch

from kagflow.classifier.batching import (
    _round_up,
    length_grouped_steps,
    pad_batch,
    padding_efficiency,
    token_budget_batches,
)
from kagflow.classifier.dequant import _is_linear4bit, dequantize_base, merge_and_dequantize
from kagflow.classifier.fit import fit_lora, lora_train_step, prepare_for_lora_training, prepare_lora_model
from kagflow.classifier.predict import ab_swap_average, predict_logits, prepare_for_inference, relative_error
from kagflow.classifier.recipe import choose_attn_implementation, flex_attention_available, recipe_for_device

from tiny_gemma import random_lora, save_tiny_gemma2

# ------------------------------------------------------------------ batching invariants

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget,max_rows,mult", [(4096, None, 1), (2048, 8, 8), (1000, 3, 64)])
def test_token_budget_batches_invariants(seed, budget, max_rows, mult):
    rng = random.Random(seed)
    lengths = [max(1, int(rng.lognormvariate(6.2, 0.7))) for _ in range(500)] + [5000, 1, 1]
    batches = token_budget_batches(lengths, budget, max_rows, pad_to_multiple_of=mult)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))          # every row once
    assert all(b for b in batches)
    # globally sorted by length, longest first
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for b in batches:
        width = _round_up(max(lengths[i] for i in b), mult)
        assert len(b) == 1 or len(b) * width <= budget       # budget held unless a lone long row
        if max_rows is not None:
            assert len(b) <= max_rows
    # sorting wastes little padding compared with random batches of 8
    eff_sorted = padding_efficiency(token_budget_batches(lengths, 8 * 800), lengths)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    eff_random = padding_efficiency([idx[i:i + 8] for i in range(0, len(idx), 8)], lengths)
    assert eff_sorted > 0.9 > eff_random


def test_token_budget_batches_edge_cases():
    assert token_budget_batches([], 100) == []
    assert token_budget_batches([10, 10, 10], 30) == [[0, 1, 2]]
    assert token_budget_batches([10, 10, 10], 29) == [[0, 1], [2]]
    assert token_budget_batches([5, 50, 7], 1000, descending=False) == [[0, 2, 1]]
    with pytest.raises(ValueError):
        token_budget_batches([1], 0)


def test_length_grouped_steps_cover_rows_once():
    rng = random.Random(3)
    lengths = [rng.randint(1, 3000) for _ in range(1003)]
    steps = length_grouped_steps(lengths, 6, seed=1)
    flat = [i for s in steps for i in s]
    assert sorted(flat) == list(range(1003))
    assert sum(len(s) != 6 for s in steps) <= (1003 // 300) + 1
    assert steps == length_grouped_steps(lengths, 6, seed=1)   # deterministic


def test_pad_batch_and_tta():
    b = pad_batch([[5, 6, 7], [8]], pad_to_multiple_of=4, labels=[1, 2])
    assert b["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert b["labels"].tolist() == [1, 2]
    p = torch.tensor([[0.7, 0.2, 0.1]])
    ps = torch.tensor([[0.1, 0.6, 0.3]])        # swapped run: B (=original A) wins
    assert torch.allclose(ab_swap_average(p, ps), torch.tensor([[0.65, 0.15, 0.2]]))


# ------------------------------------------------------------------ recipes / attention

def test_attention_never_sdpa_for_gemma2():
    for dev in [(7, 5), (8, 0), (9, 0), "cpu"]:
        assert choose_attn_implementation("gemma2", dev) != "sdpa"
    assert choose_attn_implementation("gemma2", (7, 5)) == "eager"
    assert choose_attn_implementation("gemma2", "cpu") == "eager"
    expected = "flex_attention" if flex_attention_available() else "eager"
    assert choose_attn_implementation("gemma2", (9, 0)) == expected
    assert choose_attn_implementation("llama", (9, 0)) == "sdpa"


def test_recipe_t4_vs_h100():
    t4 = recipe_for_device(15.0, (7, 5))
    h100 = recipe_for_device(79.1, (9, 0))
    assert t4.dtype == "float16" and t4.grad_scaler is True
    assert t4.gradient_checkpointing is True
    assert t4.dequantize_for_inference is False and t4.dequantize_for_training is False
    assert t4.infer_attn_implementation == "eager" and t4.train_attn_implementation == "eager"
    assert h100.dtype == "bfloat16" and h100.grad_scaler is False
    assert h100.gradient_checkpointing is False
    assert h100.dequantize_for_inference is True and h100.dequantize_for_training is True
    assert "sdpa" not in (h100.infer_attn_implementation, h100.train_attn_implementation)
    assert h100.infer_max_tokens > t4.infer_max_tokens
    a100_40 = recipe_for_device(39.4, (8, 0))
    # the seed's LoRA trains without checkpointing in 40 GB (memory.plan: ~26 GiB at 4,096 tokens); the winners'
    # (r 64 on all seven projections, nothing frozen) needs it
    assert a100_40.gradient_checkpointing is False and a100_40.dtype == "bfloat16"
    from kagflow.classifier.memory import PROJECTIONS, LoraShape

    assert recipe_for_device(39.4, (8, 0), lora=LoraShape(64, PROJECTIONS, 0, 0.05)).gradient_checkpointing is True
    # checkpoint only as many layers as memory needs: more memory, more layers keep their activations
    assert h100.uncheckpointed_layers == 0 and 0 < t4.uncheckpointed_layers
    assert t4.uncheckpointed_layers < recipe_for_device(23.6, (8, 9)).uncheckpointed_layers


def test_top_layers_keep_their_activations(tiny_4bit):
    from peft import LoraConfig, TaskType

    lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type=TaskType.SEQ_CLS)
    recipe = replace(recipe_for_device(15.0, (7, 5)), uncheckpointed_layers=1, compile_layers=False)
    pm = prepare_lora_model(tiny_4bit(), lc, recipe)
    layers = pm.get_base_model().model.layers
    assert [layer.gradient_checkpointing for layer in layers] == [True, False]


# ------------------------------------------------------------------ 4-bit -> bf16 merge

@pytest.fixture(scope="module")
def tiny_4bit(tmp_path_factory):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig, Gemma2ForSequenceClassification

    d = save_tiny_gemma2(tmp_path_factory.mktemp("tiny4"))
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)

    def load():
        return Gemma2ForSequenceClassification.from_pretrained(d, quantization_config=bnb, dtype=torch.bfloat16,
                                                               attn_implementation="eager").eval()
    return load


def _peft(model):
    return random_lora(model, ["q_proj", "k_proj", "v_proj"])


def _inputs():
    g = torch.Generator().manual_seed(5)
    seqs = [torch.randint(1, 256, (n,), generator=g).tolist() for n in (17, 9, 30, 4)]
    return seqs


def _peft_with_reference(tiny_4bit):
    """The tiny 4-bit PeftModel, its inputs (``_inputs``) padded, and its logits on them."""
    pm = _peft(tiny_4bit())
    seqs = _inputs()
    batch = pad_batch(seqs, pad_to_multiple_of=8)
    pm.train()  # bnb keeps its plain layout in train mode (eval on CPU repacks for AVX512)
    with torch.no_grad():
        ref = pm(**batch).logits.float()
    return pm, seqs, batch, ref


def test_merge_and_dequantize_matches_peft_over_4bit(tiny_4bit):
    pm, seqs, batch, ref = _peft_with_reference(tiny_4bit)
    merged = merge_and_dequantize(pm, torch.bfloat16)
    assert not any(_is_linear4bit(m) for m in merged.modules())
    assert all(p.dtype == torch.bfloat16 for p in merged.parameters())
    assert type(merged).__name__ == "Gemma2ForSequenceClassification"
    with torch.no_grad():
        got = merged(**batch).logits.float()
    assert relative_error(got, ref) < 1e-2
    # the sorted token-budget path gives the same logits, in input order
    got2 = predict_logits(merged, seqs, max_tokens=40, max_rows=2)
    assert relative_error(got2, ref) < 1e-2


def test_flatten_absmax_keeps_the_weights_and_trains(tiny_4bit):
    """Double-quantised NF4 scales flattened to float32 once: every weight dequantises to the same values (one
    kernel instead of two per linear per pass on the GPU), in training as in inference; the recipes ask for it."""
    import bitsandbytes as bnb
    from peft import LoraConfig, TaskType

    from kagflow.classifier.dequant import dequantize_weight, flatten_absmax

    q = tiny_4bit().train()  # bnb keeps its plain layout in train mode (eval on CPU repacks for AVX512)
    linears = [m for m in q.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linears and all(m.weight.quant_state.nested for m in linears)
    before = [dequantize_weight(m, torch.float32) for m in linears]
    batch = pad_batch(_inputs(), pad_to_multiple_of=8)
    with torch.no_grad():
        ref = q(**batch).logits.float()
    assert flatten_absmax(q) == len(linears) and flatten_absmax(q) == 0  # once
    assert not any(m.weight.quant_state.nested for m in linears)
    assert all(m.weight.quant_state.absmax.dtype == torch.float32 for m in linears)
    for m, w in zip(linears, before):
        assert torch.equal(dequantize_weight(m, torch.float32), w)
    with torch.no_grad():
        assert torch.equal(q(**batch).logits.float(), ref)
    for mem, cap in ((15.0, (7, 5)), (15.0, (8, 9)), (79.0, (9, 0))):
        assert recipe_for_device(mem, cap).flatten_absmax
    # prepare_lora_model flattens the 4-bit base it trains on
    lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type=TaskType.SEQ_CLS)
    pm = prepare_lora_model(tiny_4bit(), lc, replace(recipe_for_device(15.0, (7, 5)), compile_layers=False))
    assert not any(m.weight.quant_state.nested for m in pm.modules() if isinstance(m, bnb.nn.Linear4bit))


def test_densify_layers_merges_whole_layers_within_the_memory_given(tiny_4bit):
    """4-bit inference with memory to spare (a T4: ~6.7 of 15 GiB used) makes whole decoder layers dense with their
    LoRA merged, LoRA layers first, never beyond the bytes given; the rest stays 4-bit with its LoRA, and the
    logits stay the 4-bit model's."""
    from peft.tuners.lora import LoraLayer

    from kagflow.classifier.compiling import decoder_layers
    from kagflow.classifier.dequant import dense_cost_bytes, densify_layers

    pm, _, batch, ref = _peft_with_reference(tiny_4bit)
    layers = decoder_layers(pm)
    costs = [dense_cost_bytes(layer, torch.bfloat16) for layer in layers]
    assert all(c > 0 for c in costs)
    assert densify_layers(pm, costs[1] - 1, torch.bfloat16) == []  # a layer that does not fit is left as it is
    assert densify_layers(pm, costs[1] + costs[0] - 1, torch.bfloat16) == [1]  # the LoRA layer first
    assert not any(_is_linear4bit(m) or isinstance(m, LoraLayer) for m in layers[1].modules())
    assert any(_is_linear4bit(m) for m in layers[0].modules())
    assert hasattr(pm, "peft_config") and any("modules_to_save" in n for n, _ in pm.named_parameters())
    with torch.no_grad():
        got = pm(**batch).logits.float()
    assert relative_error(got, ref) < 1e-2
    assert densify_layers(pm, 10**12, torch.bfloat16) == [0]  # the rest when there is room
    assert not any(_is_linear4bit(m) for m in pm.modules())
    with torch.no_grad():
        assert relative_error(pm(**batch).logits.float(), ref) < 1e-2


def test_prepare_for_inference_makes_layers_dense_within_the_recipe_memory(tiny_4bit):
    from kagflow.classifier.compiling import decoder_layers
    from kagflow.classifier.dequant import dense_cost_bytes
    from kagflow.classifier.device import DeviceProfile
    from kagflow.classifier.pooled import PooledOnly
    from kagflow.classifier.predict import _bytes_on_device
    from kagflow.classifier.recipe import recipe_for_profile

    t4, card24 = recipe_for_device(15.0, (7, 5)), recipe_for_device(23.6, (8, 9))
    assert t4.infer_model_max_gib == 11.0 and card24.infer_model_max_gib == 19.6
    assert recipe_for_device(79.0, (9, 0)).infer_model_max_gib is None  # merged and dequantised whole there
    assert recipe_for_profile(DeviceProfile(None, 0.0, "cpu")).infer_model_max_gib is None
    pm = _peft(tiny_4bit())
    seqs = _inputs()
    ref = predict_logits(pm, seqs, max_tokens=40, max_rows=2)  # the same batches, all 4-bit
    one_layer = dense_cost_bytes(decoder_layers(pm)[1], torch.bfloat16)
    limit = (_bytes_on_device(pm) + one_layer + 1) / 2**30
    model = prepare_for_inference(pm, replace(t4, dtype="bfloat16", infer_model_max_gib=limit,
                                              infer_compile_layers=False))
    assert [any(_is_linear4bit(m) for m in layer.modules()) for layer in decoder_layers(model)] == [True, False]
    assert isinstance(decoder_layers(model)[-1].mlp, PooledOnly)  # padded batches: the top layer pools (``pooled``)
    got = predict_logits(model, seqs, max_tokens=40, max_rows=2)
    assert relative_error(got, ref) < 1e-2


def test_dequantize_base_is_exact_and_trains(tiny_4bit):
    q = tiny_4bit()
    batch = pad_batch(_inputs(), pad_to_multiple_of=8, labels=[0, 1, 2, 0])
    q.train()
    with torch.no_grad():
        ref = q(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    dense = dequantize_base(q, torch.bfloat16)
    assert not any(_is_linear4bit(m) for m in dense.modules())
    with torch.no_grad():
        got = dense(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    assert relative_error(got, ref) < 1e-3
    pm = _peft(dense).train()
    prepare_for_lora_training(pm, gradient_checkpointing=True)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    # micro-batching under a token budget gives the same step loss as one batch
    lengths = [int(m.sum()) for m in batch["attention_mask"]]
    mbs = [pad_batch([batch["input_ids"][i, :lengths[i]].tolist() for i in b], pad_to_multiple_of=8,
                     labels=[int(batch["labels"][i]) for i in b])
           for b in token_budget_batches(lengths, 40)]
    assert len(mbs) > 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        one = torch.nn.functional.cross_entropy(
            pm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(), batch["labels"])
    seen = []
    h = pm.get_base_model().get_input_embeddings().register_forward_hook(
        lambda mod, inp, out: seen.append(out.requires_grad))
    loss = lora_train_step(pm, mbs, opt, autocast_dtype=torch.bfloat16)
    h.remove()
    assert seen and not any(seen)   # backward stops at the first LoRA layer, not at the embedding
    lora = [p for n, p in pm.named_parameters() if "lora_A" in n]
    assert lora and all(p.grad is None for p in lora)   # zeroed after the step (set_to_none)
    assert abs(float(loss) - float(one)) < 2e-2 * float(one)
    frozen = [n for n, p in pm.named_parameters() if p.requires_grad and "lora" not in n and "modules_to_save" not in n]
    assert frozen == []


def test_fit_lora_and_prepare_helpers(tiny_4bit):
    from peft import LoraConfig, TaskType

    recipe = replace(recipe_for_device(79.0, (9, 0)), train_max_tokens=48, infer_attn_implementation="eager",
                     compile_layers=False)  # compiled layers: test_compiling.py
    lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"], layers_to_transform=[1],
                    lora_dropout=0.0, task_type=TaskType.SEQ_CLS)
    torch.manual_seed(0)
    pm = prepare_lora_model(tiny_4bit(), lc, recipe)          # dequantised base (big-card recipe)
    assert not any(_is_linear4bit(m) for m in pm.modules())
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(1, 256, (int(n),), generator=g).tolist() for n in torch.randint(3, 30, (26,), generator=g)]
    labels = [i % 3 for i in range(26)]
    before = {n: p.detach().clone() for n, p in pm.named_parameters() if "lora_B" in n}
    logs = []
    losses = fit_lora(pm, seqs, labels, recipe, rows_per_step=6, epochs=1, lr=1e-2, warmup_steps=1,
                      log_every=2, on_log=logs.append)
    assert len(losses) == 5 and all(math.isfinite(x) for x in losses)
    assert logs and logs[-1]["step"] == 5
    assert any(not torch.equal(before[n], p) for n, p in pm.named_parameters() if "lora_B" in n)
    model = prepare_for_inference(pm, recipe)
    out = predict_logits(model, seqs, max_tokens=64)
    assert out.shape == (26, 3) and torch.isfinite(out).all()


def _tiny_lora(dropout: float):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    cfg = Gemma2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                       num_labels=3, pad_token_id=0, attn_implementation="eager")
    torch.manual_seed(0)
    model = Gemma2ForSequenceClassification(cfg)
    lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=dropout,
                    task_type=TaskType.SEQ_CLS)
    torch.manual_seed(1)
    pm = get_peft_model(model, lc)
    prepare_for_lora_training(pm, gradient_checkpointing=False)
    return pm


def _ddp_data():
    g = torch.Generator().manual_seed(4)
    seqs = [[i + 1] + torch.randint(1, 256, (int(n),), generator=g).tolist()  # first token: the row's id
            for i, n in enumerate(torch.randint(3, 20, (22,), generator=g))]
    return seqs, [i % 3 for i in range(22)]


def _ddp_fit(dropout, *, checkpointing=None, crash_after=None, seen=None):
    from kagflow.classifier.resume import Checkpointing  # noqa: F401 - the type checkpointing has

    pm = _tiny_lora(dropout)
    if seen is not None:
        def record(module, args, kwargs):
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            seen.extend(int(row[0]) - 1 for row, m in zip(ids, mask))
        pm.register_forward_pre_hook(record, with_kwargs=True)
    recipe = replace(recipe_for_device(15.0, (7, 5)), dtype="float32", grad_scaler=False, train_max_tokens=40)
    seqs, labels = _ddp_data()
    logs = []

    def on_log(entry):
        logs.append(entry)
        if crash_after is not None and entry.get("step") == crash_after:
            raise KeyboardInterrupt("killed")

    torch.manual_seed(7)
    losses = fit_lora(pm, seqs, labels, recipe, rows_per_step=4, lr=1e-2, warmup_steps=2, optim_type="adamw_torch",
                      log_every=1, on_log=on_log, checkpointing=checkpointing)
    return losses, [e["lr"] for e in logs if "lr" in e], {n: p.detach().clone() for n, p in pm.named_parameters()
                                                          if p.requires_grad}


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    from kagflow.classifier.resume import Checkpointing

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = {}
        seen = []
        mine = Checkpointing(folder=f"{out_dir}/own-rank{rank}", every_steps=2)  # who writes?
        out["full"] = _ddp_fit(0.0, checkpointing=mine, seen=seen)
        out["seen"] = seen
        shared = Checkpointing(folder=f"{out_dir}/shared", every_steps=2, keep=None)
        out["reference"] = _ddp_fit(0.1)
        try:
            _ddp_fit(0.1, checkpointing=shared, crash_after=3)  # killed after step 3; checkpoint at step 2
        except KeyboardInterrupt:
            pass
        out["resumed"] = _ddp_fit(0.1, checkpointing=shared)
        out["resumed_from"] = out["resumed"][0].resumed_from
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_fit_lora_data_parallel_matches_one_process_and_resumes(tmp_path):
    """DDP (gloo, 2 processes) vs one process: distinct rows per rank, same global batch, steps and LR schedule,
    same adapter; only rank 0 writes checkpoints; a killed DDP run resumes to the uninterrupted run's adapter."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    torch.set_num_threads(1)
    one_losses, one_lrs, one_lora = _ddp_fit(0.0)
    # every rank saw distinct rows, together all of them once
    assert set(r0["seen"]).isdisjoint(r1["seen"]) and sorted(r0["seen"] + r1["seen"]) == list(range(22))
    losses, lrs, lora = r0["full"]
    assert len(losses) == len(one_losses) == 6 and losses.steps_total == 6  # 22 rows / 4 per step, not halved
    assert lrs == one_lrs                                                  # the one-GPU LR schedule
    assert losses == pytest.approx(one_losses, rel=1e-5)                  # the one-GPU global batch
    for n, p in lora.items():
        assert torch.allclose(p, one_lora[n], atol=1e-5), n
        assert torch.equal(p, r1["full"][2][n]), n                        # ranks stay identical
    assert sorted(p.name for p in (tmp_path / "own-rank0").iterdir()) == ["fit-step-000002", "fit-step-000004"]
    assert not (tmp_path / "own-rank1").exists()                           # only rank 0 writes
    assert r0["resumed_from"].endswith("fit-step-000002") and r1["resumed_from"] == r0["resumed_from"]
    for r in (r0, r1):
        assert r["resumed"][0] == pytest.approx(r["reference"][0], rel=1e-6)
        for n, p in r["resumed"][2].items():
            assert torch.allclose(p, r["reference"][2][n], atol=1e-6), n   # dropout RNG restored per rank
