"""Kaggle naming rules: slugs, titles, handles, frameworks."""

import pytest

from kagflow.errors import NamingError
from kagflow.rules import slugs


@pytest.mark.parametrize("title, slug", [
    ("Gemma2 QLoRA arena train", "gemma2-qlora-arena-train"),
    ("Gemma 2 — classif LMSYS", "gemma-2-classif-lmsys"),
    ("Ünïcödé Títle çà", "unicode-title-ca"),
    ("snake_case_title", "snake-case-title"),
    ("  leading and trailing  ", "leading-and-trailing"),
    ("multiple---hyphens!!!here", "multiple-hyphens-here"),
    ("日本語 model", "ri-ben-yu-model"),
])
def test_slugify_matches_the_official_client(title, slug):
    from slugify import slugify as official  # what kaggle's kernels_push compares with

    assert slugs.slugify(title) == slug == official(title)


def test_kernel_title_limits():
    assert slugs.kernel_slug("Gemma") == "gemma"
    with pytest.raises(NamingError, match="5..50"):
        slugs.kernel_slug("Gem")
    with pytest.raises(NamingError) as err:
        slugs.kernel_slug("A very long kernel title that goes on and on past fifty chars")
    assert err.value.hint and len(eval(err.value.hint.removeprefix("use "))) <= 50


def test_dataset_title_limits_and_suggestion():
    with pytest.raises(NamingError) as err:
        slugs.dataset_slug("wheel")
    assert "6..50" in err.value.message
    assert "wheel" in err.value.hint
    assert slugs.dataset_slug("pip wheels bnb") == "pip-wheels-bnb"


def test_title_that_slugifies_to_nothing_is_refused():
    with pytest.raises(NamingError):
        slugs.kernel_slug("!!!!!!")


@pytest.mark.parametrize("bad", ["Bad Slug", "-lead", "trail-", "dou--ble", "UPPER", "under_score", "",
                                 "ok-slug\n"])
def test_check_slug_rejects_and_suggests(bad):
    with pytest.raises(NamingError) as err:
        slugs.check_slug(bad, what="model slug")
    assert repr(bad) in err.value.message
    if bad:
        assert "use '" in err.value.hint


@pytest.mark.parametrize("good", ["model_3ff33db0-e362-4366-8a3b-f3b69f7d1d73", "bert_tiny_en_uncased", "qwen2.5",
                                  "llama-3.1", "1.5b-instruct", "gemma"])
def test_model_slugs_follow_kaggle_not_kagflows_narrower_rule(good):
    assert slugs.check_model_slug(good) == good
    h = slugs.ModelInstanceVersionHandle.parse(f"keras/{good}/Keras/{good}/2")
    assert str(h) == f"keras/{good}/keras/{good}/2"


@pytest.mark.parametrize("bad", ["Bert", "-lead", "trail_", "dou__ble", "a..b", "", "x" * 51, "ok\n"])
def test_model_slugs_kaggle_refuses_are_refused_with_a_fix(bad):
    with pytest.raises(NamingError) as err:
        slugs.check_model_slug(bad)
    assert repr(bad) in err.value.message


def test_a_short_model_title_is_kagglish():
    assert slugs.model_slug("BERT") == "bert"  # keras/bert is titled "BERT" on Kaggle


def test_owner_allows_underscores_but_not_uppercase():
    assert slugs.check_owner("some_user-1") == "some_user-1"
    for bad in ("Alice", "alice\n"):
        with pytest.raises(NamingError):
            slugs.check_owner(bad)


@pytest.mark.parametrize("given, enum, meta, source", [
    ("Transformers", "TRANSFORMERS", "transformers", "transformers"),
    ("TRANSFORMERS", "TRANSFORMERS", "transformers", "transformers"),
    ("pytorch", "PY_TORCH", "pyTorch", "pytorch"),
    ("PY_TORCH", "PY_TORCH", "pyTorch", "pytorch"),
    ("tensorFlow2", "TENSOR_FLOW_2", "tensorFlow2", "tensorflow2"),
    ("tensor-flow-1", "TENSOR_FLOW_1", "tensorFlow1", "tensorflow1"),
    ("GemmaCpp", "GEMMA_CPP", "gemmaCpp", "gemmacpp"),
    ("MODEL_FRAMEWORK_JAX", "JAX", "jax", "jax"),
])
def test_framework_forms(given, enum, meta, source):
    assert slugs.framework_enum(given) == enum
    assert slugs.framework_metadata_name(given) == meta
    assert slugs.framework_source_name(given) == source


def test_framework_metadata_name_round_trips_through_the_official_lookup():
    from kagglesdk.models.types.model_enums import ModelFramework

    from kagflow.hub.client import EndpointKaggleApi

    api = EndpointKaggleApi(None)
    for name in slugs.FRAMEWORKS:
        form = slugs.framework_metadata_name(name)
        assert api.lookup_enum(ModelFramework, ModelFramework.MODEL_FRAMEWORK_API, form).name == \
            "MODEL_FRAMEWORK_" + name


def test_unknown_framework_suggests():
    with pytest.raises(NamingError) as err:
        slugs.framework_enum("transformer-ish")
    assert "transformers" in err.value.hint


def test_dataset_handle_with_and_without_version():
    h = slugs.DatasetHandle.parse("alice/pip-wheels-bnb/3")
    assert (h.owner, h.slug, h.version) == ("alice", "pip-wheels-bnb", 3)
    assert str(h) == "alice/pip-wheels-bnb/3"
    assert str(h.with_version(None)) == "alice/pip-wheels-bnb"
    assert h.to_url().endswith("/datasets/alice/pip-wheels-bnb")
    for bad in ("alice", "alice/", "alice/pip/x", "alice/pip/0", "a/b/c/d"):
        with pytest.raises(NamingError):
            slugs.DatasetHandle.parse(bad)


def test_kernel_handle_rules():
    assert str(slugs.KernelHandle.parse("alice/gemma2-train")) == "alice/gemma2-train"
    with pytest.raises(NamingError):
        slugs.KernelHandle.parse("alice/abc")  # slug shorter than 5


def test_model_instance_version_handle_normalises_framework():
    h = slugs.ModelInstanceVersionHandle.parse("pottieral/gemma/Transformers/gemma2-9b-4bit-base/2")
    assert str(h) == "pottieral/gemma/transformers/gemma2-9b-4bit-base/2"
    assert h.instance_handle.model_handle == slugs.ModelHandle("pottieral", "gemma")
    assert slugs.model_source("a/b/TRANSFORMERS/c/7") == "a/b/transformers/c/7"


def test_unversioned_model_source_is_refused_with_the_fix():
    with pytest.raises(NamingError) as err:
        slugs.ModelInstanceVersionHandle.parse("alice/gemma/transformers/base")
    assert "no version" in err.value.message
    assert "alice/gemma/transformers/base/1" in err.value.hint


@pytest.mark.parametrize("bad", ["alice/gemma/transformers/base/latest", "alice/gemma/transformers/base/0",
                                 "alice/gemma/flaxx/base/1", "alice/Gemma/transformers/base/1"])
def test_invalid_model_sources(bad):
    with pytest.raises(NamingError):
        slugs.ModelInstanceVersionHandle.parse(bad)


def test_instance_handle_version_helper():
    inst = slugs.ModelInstanceHandle.parse("alice/gemma/Transformers/base")
    assert str(inst.version(4)) == "alice/gemma/transformers/base/4"
    with pytest.raises(NamingError):
        inst.version(0)
