"""kagflow.toml: typed loading, one clear message per problem, credentials, pinned versions."""


import pytest

from kagflow.errors import ConfigError
from kagflow.project.config import load_config
from kagflow.project.credentials import credentials_username, has_credentials
from kagflow.project.edit import set_value

from repo_root import REPO


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_init_config_loads_with_the_seed_recipe(project):
    cfg = load_config(project)
    t = cfg.train
    assert (t.max_length, t.n_splits, t.fold_idx, t.optim_type) == (1024, 5, 0, "auto")
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.per_device_eval_batch_size) == (3, 2, 8)
    assert (t.n_epochs, t.freeze_layers, t.lr, t.warmup_steps) == (1.0, 16, 2e-4, 20)
    assert (t.lora_r, t.lora_alpha, t.lora_dropout) == (64, 16.0, 0.05)  # the LoRA that fits 12 h on T4 x2
    assert t.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert cfg.username == "alice"
    assert set(cfg.kernels) == {"train", "infer"}
    assert cfg.kernel("infer").internet is False


def test_repository_config_is_valid():

    cfg = load_config(REPO / "kagflow.toml")
    assert cfg.project.competition == "llm-classification-finetuning"


@pytest.mark.parametrize("old, new, expect", [
    ("lr = 2e-4", 'lr = "fast"', ["[train] lr", '"fast"', "not a number", "lr = 0.0002"]),
    ("n_splits = 5", "n_splits = 5.5", ["n_splits = 5.5", "whole number"]),
    ("internet = false", 'internet = "no"', ["[kernels.train] internet", "true or false"]),
    ("max_length = 2048", "max_lenght = 2048", ["unknown key 'max_lenght'", "[infer]", "max_length"]),
    # a model title may be short (Kaggle hosts "BERT"), not past 50 characters
    ('title = "Gemma2 arena adapter"', f'title = "{"Gemma2 arena adapter " * 3}"', ["[adapter_model] title", "1..50"]),
    ('instance = "peft-lora-classifier"', 'instance = "Peft_Lora"', ["instance", "'Peft_Lora'", "peft-lora"]),
    ('framework = "transformers"', 'framework = "transformer"', ["framework", "unknown model framework"]),
    ('target = "auto"', 'target = "cloud"', ["target", "cloud"]),
    ('competition = "llm-classification-finetuning"', 'competition = "LLM Classif"', ["competition"]),
    ('requirements = ["peft==0.21.2", "bitsandbytes==0.50.2"]', 'requirements = "peft"', ["requirements",
                                                                                          "list of strings"]),
    ('license = ""', 'license = "Apache-2.0"', ["[base_model] license", "not one Kaggle accepts", "'Apache 2.0'"]),
    ('instance_type = "ExternalVariant"', 'instance_type = "InternalVariant"',
     ["[base_model] instance_type", "'KaggleVariant'"]),
    ('instance_type = "ExternalVariant"', 'instance_type = "KaggleVariant"',
     ["names no base_instance", "base_instance = \"owner/model-slug/framework/instance-slug\""]),
    ('base_url = ""', 'base_url = "huggingface.co/google/gemma-2-9b"', ["[base_model] base_url", "not an http(s) URL"]),
    ('base_instance = ""', 'base_instance = "google/gemma-2"', ["[base_model] base_instance"]),
    ('license = "other"', 'license = "CC0"', ["[wheels] license", "'CC0-1.0'"]),
    ('docker_image_pinning_type = "original"', 'docker_image_pinning_type = "pinned"',
     ["[kernels.train] docker_image_pinning_type", "'original'"]),
    ('training_data = []', 'training_data = "competition"', ["training_data", "list of strings"]),
    # the model input's keys (classifier/text.py Encoding), checked against [data] text_columns
    ('truncation = "head_tail"', 'truncation = "hed_tail"', ["[train] truncation", "did you mean 'head_tail'"]),
    ("text_shares = []", "text_shares = [0.5, 0.5]", ["[train] text_shares", "prompt, response_a, response_b",
                                                     "text_shares = [0.2, 0.4, 0.4]"]),
    ("text_shares = []", "text_shares = [0.2, 0, 0.4]", ["[train] text_shares", "one positive share"]),
    ("whole_rounds = true", 'whole_rounds = "yes"', ["[train] whole_rounds", "true or false"]),
])
def test_bad_values_name_key_value_and_fix(project, old, new, expect):
    _edit(project, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(project)
    text = err.value.render()
    for piece in expect:
        assert piece in text, (piece, text)
    assert "kagflow.toml" in text


@pytest.mark.parametrize("template, expect", [
    ("{{ prompt }} {{ response_a }}", "'response_b' must appear exactly once"),
    ("{{ prompt }}{{ response_a }}{{ response_b }}{{ prompt }}", "'prompt' must appear exactly once"),
    ("{{ prompt ", "does not render"),
    ("{{ prompt }}{{ response_a }}{{ response_b }}{{ question }}", "'question' is undefined"),
])
def test_a_prompt_template_must_place_each_text_column_once(project, template, expect):
    _edit(project, "prompt_template = ", f"prompt_template = {template!r}\nold = ")
    _edit(project, "\nold = ", "\n# ")
    with pytest.raises(ConfigError) as err:
        load_config(project)
    text = err.value.render()
    assert "[train] prompt_template" in text and expect in text and "table [train], key prompt_template" in text


def test_missing_required_key(project):
    _edit(project, 'instance = "gemma2-9b-4bit-base"\n', "")
    with pytest.raises(ConfigError) as err:
        load_config(project)
    assert "missing the required key 'instance'" in err.value.message
    assert "instance = " in err.value.hint


def test_unknown_table_and_bad_toml(project):
    text = project.read_text()
    project.write_text(text + "\n[trian]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_config(project)
    project.write_text("[project\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(project)


def test_tiny_overrides_are_typed(project):
    _edit(project, "n_epochs = 5.0", 'n_epochs = "many"')
    with pytest.raises(ConfigError, match=r"tiny.train"):
        load_config(project)


def test_train_params_apply_tiny_overrides(project):
    cfg = load_config(project)
    assert cfg.recipe("train", stand_in=False)["lr"] == 2e-4
    tiny = cfg.recipe("train", stand_in=True)
    assert tiny["lr"] == 1e-3 and tiny["freeze_layers"] == 0 and "o_proj" in tiny["target_modules"]
    assert cfg.recipe("infer", stand_in=True)["max_length"] == 128
    assert cfg.recipe("infer", stand_in=False)["tta"] is True


def test_stand_in_selects_its_overrides(project):
    assert load_config(project).base_model.stand_in == "tiny"
    _edit(project, 'stand_in = "tiny"', 'stand_in = "gemma3-270m"')
    cfg = load_config(project)
    params = cfg.recipe("train", stand_in=True)
    assert params["max_train_rows"] == 320 and params["lr"] == 5e-4 and params["eval_strategy"] == "no"
    assert cfg.recipe("train", stand_in=False)["max_train_rows"] == 0
    assert cfg.recipe("infer", stand_in=True)["batch_size"] == 16


def test_unknown_stand_in_says_which_exist(project):
    _edit(project, 'stand_in = "tiny"', 'stand_in = "gemma3-270"')
    with pytest.raises(ConfigError) as err:
        load_config(project)
    text = err.value.render()
    for piece in ("[base_model] stand_in", '"gemma3-270"', "kagflow.toml", 'did you mean stand_in = "gemma3-270m"'):
        assert piece in text, (piece, text)


def test_stand_in_overrides_are_typed(project):
    _edit(project, "warmup_steps = 4", 'warmup_steps = "few"')
    with pytest.raises(ConfigError, match=r"gemma3-270m.train"):
        load_config(project)


def test_username_falls_back_to_credentials(project, kaggle_credentials, capsys):
    _edit(project, 'username = "alice"', 'username = ""')
    monkey_user = load_config(project).username
    assert monkey_user == "alice" == credentials_username()
    assert has_credentials()
    assert kaggle_credentials["key"] not in capsys.readouterr().out


def test_no_credentials(project):
    assert not has_credentials()
    _edit(project, 'username = "alice"', 'username = ""')
    assert load_config(project).username == "kagflow"


def test_set_value_keeps_comments_and_layout(project):
    before = project.read_text()
    set_value(project, "base_model", "version", 7)
    after = project.read_text()
    assert load_config(project).base_model.version == 7
    assert load_config(project).adapter_model.version == 0
    assert after.count("\n") == before.count("\n")
    assert "# Pinned instance version" in after


def test_set_value_adds_missing_key(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text("[a]\nx = 1 # keep\n\n[b]\ny = 2\n")
    set_value(path, "a", "z", "new")
    set_value(path, "a", "x", 3)
    text = path.read_text()
    assert 'x = 3 # keep' in text and 'z = "new"' in text
    assert text.index('z = "new"') < text.index("[b]")


def test_find_config_searches_upwards(project, monkeypatch):
    sub = project.parent / "kernels"
    monkeypatch.chdir(sub)
    assert load_config().path == project.resolve()


def test_no_config_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "kagflow init" in err.value.hint


def test_lineage_of_each_model_instance(project):
    """The base re-publishes a Hugging Face checkpoint (ExternalVariant of its page); the adapter is a KaggleVariant of
    the base instance, trained on the competition; each key given in kagflow.toml wins."""
    cfg = load_config(project)
    base, adapter = cfg.lineage("base_model"), cfg.lineage("adapter_model")
    assert (base.instance_type, base.base_url, base.base_instance, base.training_data) == (
        "ExternalVariant", "https://huggingface.co/unsloth/gemma-2-9b-it-bnb-4bit", "", ())
    assert adapter.instance_type == "KaggleVariant" and adapter.base_url == ""
    assert adapter.base_instance == "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base"
    assert adapter.training_data == ("https://www.kaggle.com/competitions/llm-classification-finetuning",)
    _edit(project, 'base_url = ""', 'base_url = "https://huggingface.co/google/gemma-2-9b-it"')
    _edit(project, 'instance_type = "KaggleVariant"\nbase_instance = ""',
          'instance_type = "KaggleVariant"\nbase_instance = "google/gemma-2/transformers/gemma-2-9b-it"')
    cfg = load_config(project)
    assert cfg.lineage("base_model").base_url == "https://huggingface.co/google/gemma-2-9b-it"
    assert cfg.lineage("adapter_model").base_instance == "google/gemma-2/transformers/gemma-2-9b-it"
