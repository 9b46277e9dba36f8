"""Inference on the trained tiny classifier: batching, order, A/B-swap TTA, submission checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier.data import load_arena_csv
from kagflow.classifier.infer import predict
from kagflow.classifier.predict import SWAP_AB, predict_proba, token_batches
from kagflow.classifier.submission import check_submission, make_submission, write_submission
from kagflow.classifier.synth import MARKER
from kagflow.classifier.text import encode_rows

pytest_plugins = ["classifier_fixtures"]  # shared session fixtures: the tiny model is trained once
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_token_batches_cover_every_row_once_within_budget():
    lengths = [5, 300, 17, 64, 64, 1, 250, 1000, 3]
    batches = token_batches(lengths, 600)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        widest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * widest <= 600
    assert batches[0] == [7]  # longest first: memory trouble shows up at once
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


@pytest.fixture(scope="module")
def test_rows(synthetic_competition):
    return load_arena_csv(synthetic_competition["test"], labeled=False).frame


def _swap(frame):
    return frame.assign(response_a=frame["response_b"], response_b=frame["response_a"])


def test_batched_predictions_come_back_in_input_order(tiny_classifier, test_rows):
    model, tokenizer = tiny_classifier
    rows = test_rows.head(60)
    ids = encode_rows(tokenizer, rows["prompt"], rows["response_a"], rows["response_b"], 128)
    batched = predict_proba(model, ids, pad_token_id=tokenizer.pad_token_id, token_budget=512)
    one_by_one = np.vstack([predict_proba(model, [row], pad_token_id=tokenizer.pad_token_id) for row in ids])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
    np.testing.assert_allclose(batched.sum(axis=1), 1, atol=1e-12)


def test_swap_tta_puts_swapped_probabilities_back_in_their_columns(tiny_classifier, test_rows):
    model, tokenizer = tiny_classifier
    plain = predict(model, tokenizer, test_rows, max_length=128)
    swapped = predict(model, tokenizer, _swap(test_rows), max_length=128)
    tta = predict(model, tokenizer, test_rows, max_length=128, tta=True)
    np.testing.assert_allclose(tta, (plain + swapped[:, SWAP_AB]) / 2, atol=1e-12)
    # averaging over both orders makes the prediction symmetric: swapping A and B swaps its columns
    np.testing.assert_allclose(predict(model, tokenizer, _swap(test_rows), max_length=128, tta=True),
                               tta[:, SWAP_AB], atol=1e-5)
    np.testing.assert_allclose(tta.sum(axis=1), 1, atol=1e-12)
    # the trained model follows the marker: A-only rows go to A, and to B once swapped
    a_only = np.array([MARKER in a[-1] and MARKER not in b[-1] if a and b else False
                       for a, b in zip(test_rows["response_a"], test_rows["response_b"])])
    assert a_only.sum() >= 50
    assert (plain[a_only].argmax(axis=1) == 0).mean() >= 0.85
    assert (swapped[a_only].argmax(axis=1) == 1).mean() >= 0.85


def test_check_submission_catches_what_kaggle_rejects():
    ids = [3, 1, 2]
    good = make_submission(ids, np.full((3, 3), 1 / 3))
    assert check_submission(good, ids) == []
    assert check_submission(good, [1, 2, 3]) == ["ids differ from test.csv's ids or their order"]
    assert "columns are" in check_submission(good.drop(columns="winner_tie"), ids)[0]
    bad = make_submission(ids, [[0.5, 0.5, 0.1], [1.2, -0.2, 0.0], [np.nan, 0.5, 0.5]])
    assert check_submission(bad.iloc[:1], ids[:1]) == ["rows do not sum to 1 (worst deviation 1.00e-01)"]
    assert check_submission(bad.iloc[1:2], ids[1:2]) == ["probabilities outside [0, 1]"]
    assert check_submission(bad.iloc[2:], ids[2:])[0] == "probabilities contain NaN or inf"


def test_write_submission_refuses_an_invalid_file(tmp_path):
    with pytest.raises(ValueError, match="rows do not sum to 1"):
        write_submission([1], [[0.2, 0.2, 0.2]], tmp_path / "submission.csv")
    assert not (tmp_path / "submission.csv").exists()
    path = write_submission([7, 5], [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], tmp_path / "submission.csv")
    assert pd.read_csv(path).to_dict("list") == {"id": [7, 5], "winner_model_a": [0.2, 1.0],
                                                 "winner_model_b": [0.3, 0.0], "winner_tie": [0.5, 0.0]}


def _test_csv_with_ids(source, path, ids):
    rows = pd.read_csv(source, dtype=str, keep_default_na=False).head(len(ids)).assign(id=ids)
    rows.to_csv(path, index=False)
    return path


def test_na_empty_and_numeric_looking_ids_round_trip_into_submission(tiny_checkpoint, adapter_dir,
                                                                      synthetic_competition, tmp_path):
    from kagflow.classifier.infer import InferConfig, run_inference

    ids = ["NA", "", "007", "12", "nan"]
    test_csv = _test_csv_with_ids(synthetic_competition["test"], tmp_path / "test.csv", ids)
    assert list(load_arena_csv(test_csv, labeled=False).frame["id"]) == ids
    out = run_inference(InferConfig(max_length=64, batch_size=8, tta=False), test_csv=test_csv,
                        base=tiny_checkpoint, adapter=adapter_dir, output_path=tmp_path / "submission.csv",
                        devices=["cpu"])
    written = pd.read_csv(out["path"], dtype=str, keep_default_na=False)
    assert list(written["id"]) == ids


def test_repeated_test_ids_stop_inference_with_one_message(synthetic_competition, tmp_path):
    from kagflow.classifier.infer import InferConfig, run_inference

    test_csv = _test_csv_with_ids(synthetic_competition["test"], tmp_path / "test.csv", ["1", "2", "1", "", ""])
    with pytest.raises(ValueError) as err:  # raised before any model is loaded (no model here)
        run_inference(InferConfig(), test_csv=test_csv, base=tmp_path / "no-model", adapter=tmp_path / "none",
                      output_path=tmp_path / "submission.csv", devices=["cpu"])
    message = str(err.value)
    assert "'1' (2 rows)" in message and "'' (2 rows)" in message and "its own id" in message


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
def test_a_model_trained_in_mixed_precision_is_evaluated_under_its_autocast(tmp_path, half):
    """The fast loop leaves a half-precision base (bf16, or fp16 on a T4) with fp32 LoRA and score head
    (``prepare_for_lora_training``); its final validation runs under the caller's autocast in the device
    profile's dtype (``train._eval_autocast``, on the GPU; here the CPU's autocast in the same dtype). The
    inference loop must not switch that autocast off: it did (a disabled autocast of its own when none was
    asked), and every GPU training run failed after its last step ("expected mat1 and mat2 to have the same
    dtype")."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import Gemma2ForSequenceClassification

    from kagflow.classifier.fit import prepare_for_lora_training

    from tiny_gemma import save_tiny_gemma2

    ckpt = save_tiny_gemma2(tmp_path / "tiny", num_hidden_layers=2)
    dtype = getattr(torch, half)
    model = Gemma2ForSequenceClassification.from_pretrained(ckpt, dtype=dtype, attn_implementation="eager")
    pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                          task_type=TaskType.SEQ_CLS))
    prepare_for_lora_training(pm, gradient_checkpointing=False)
    trainable = {p.dtype for p in pm.parameters() if p.requires_grad}
    assert trainable == {torch.float32} and pm.get_base_model().model.embed_tokens.weight.dtype == dtype
    pm.eval()
    seqs = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    with torch.autocast("cpu", dtype=dtype):
        probs = predict_proba(pm, seqs, pad_token_id=0, token_budget=64)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1)
    # the same as predicting with the autocast asked for explicitly
    from kagflow.classifier.predict import predict_logits

    explicit = predict_logits(pm, seqs, max_tokens=64, pad_id=0, autocast_dtype=dtype).softmax(-1).double().numpy()
    np.testing.assert_allclose(probs, explicit, atol=1e-6)
