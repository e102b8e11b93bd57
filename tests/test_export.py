"""export.py: merged weights, the exported directory, GGUF files and the Ollama Modelfile."""

import json

import numpy as np
import pytest
import torch

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.export import ExportError, gguf_name, merge_and_save, ollama_modelfile, rope_interleave, write_gguf

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": "5."},
]


@pytest.fixture(scope="module")
def adapter(demo, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on every linear layer: merging must change the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(demo / "tiny-model"),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(demo / "tiny-model").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def exported(demo, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    model, tokenizer = merge_and_save(
        str(demo / "tiny-model"), str(adapter), out, TEMPLATES["chatml"], dtype="float32", shard_gb=0.0002
    )
    return out, model, tokenizer


def test_merged_logits_equal_base_plus_adapter(demo, adapter, exported):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _, _ = exported
    ids = torch.tensor([[5, 60, 70, 80, 90, 100, 110]])
    base = AutoModelForCausalLM.from_pretrained(demo / "tiny-model")
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        unmerged = PeftModel.from_pretrained(base, adapter).eval()(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out).eval()(input_ids=ids).logits
    assert not torch.allclose(plain, unmerged, atol=1e-3)  # the adapter matters
    assert torch.allclose(merged, unmerged, atol=1e-5)


def test_export_is_sharded_and_chats_with_the_run_template(exported):
    from transformers import AutoTokenizer

    out, _, _ = exported
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    tokenizer = AutoTokenizer.from_pretrained(out)
    for add_generation_prompt, messages in ((False, CHAT), (True, CHAT[:2])):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert text == TEMPLATES["chatml"].render(messages, add_generation_prompt=add_generation_prompt).text


def test_refuses_merging_into_a_quantized_base(tmp_path, adapter):
    base = tmp_path / "gptq-base"
    base.mkdir()
    (base / "config.json").write_text(
        json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gptq"}})
    )
    with pytest.raises(ExportError, match="stored quantized.*full-precision version of the base model"):
        merge_and_save(str(base), str(adapter), tmp_path / "out", None)


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_gguf_reads_back(exported, tmp_path, kind):
    import gguf

    _, model, tokenizer = exported
    path = write_gguf(model, tokenizer, tmp_path / f"m-{kind}.gguf", kind, name="tiny")
    reader = gguf.GGUFReader(str(path))

    def field(key):
        value = reader.fields[key]
        return value.contents() if hasattr(value, "contents") else value.parts[value.data[0]]

    config = model.config
    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == config.num_hidden_layers
    assert field("llama.embedding_length") == config.hidden_size
    assert field("llama.attention.head_count_kv") == config.num_key_value_heads
    assert field("tokenizer.ggml.model") == "gpt2"
    assert len(field("tokenizer.ggml.tokens")) == len(tokenizer)
    assert field("tokenizer.chat_template") == tokenizer.chat_template
    state = model.state_dict()
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {gguf_name(name) for name in state}
    for hf_name, weight in state.items():
        tensor = tensors[gguf_name(hf_name)]
        assert [int(d) for d in tensor.shape] == list(reversed(weight.shape))  # GGUF lists dimensions innermost first
        expected_type = "F32" if weight.ndim == 1 else kind.upper()
        assert tensor.tensor_type.name == expected_type
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(weight.shape)
        original = weight.numpy()
        if hf_name.endswith("q_proj.weight"):
            original = rope_interleave(original, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            original = rope_interleave(original, config.num_key_value_heads)
        tolerance = 1e-3 if kind == "f16" else 2e-2 * float(np.abs(original).max())
        assert np.abs(values - original).max() <= tolerance, hf_name


def test_gguf_runs_in_llama_cpp_like_transformers(exported, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    from transformers import AutoModelForCausalLM

    out, model, tokenizer = exported
    path = write_gguf(model, tokenizer, tmp_path / "m.gguf", "f16", name="tiny")
    reference = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float16).float().eval()  # the same f16 weights
    prompt = tokenizer(TEMPLATES["chatml"].render(CHAT[:2], add_generation_prompt=True).text, add_special_tokens=False)[
        "input_ids"
    ]
    with torch.no_grad():
        expected = reference.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[
            0, len(prompt) :
        ].tolist()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)
    text = TEMPLATES["chatml"].render(CHAT[:2], add_generation_prompt=True).text
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == prompt  # same tokenizer
    got = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        got.append(token)
        if len(got) == len(expected) or token == tokenizer.eos_token_id:
            break
    assert got == expected


def test_ollama_modelfile_follows_the_template():
    modelfile = ollama_modelfile(TEMPLATES["chatml"], "m.gguf", "", "</s>", default_system="Be brief.")
    assert modelfile.startswith("FROM ./m.gguf\n")
    assert '{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in modelfile
    assert '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n{{ end }}' in modelfile
    assert '{{ end }}<|im_start|>assistant\n"""' in modelfile  # the generation prompt closes the template
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and 'SYSTEM """Be brief."""' in modelfile
    llama2 = ollama_modelfile(TEMPLATES["llama2"], "m.gguf", "<s>", "</s>")
    assert (
        "{{ if and (eq $i 0) $.System }}<s>[INST] <<SYS>>\n{{ $.System }}\n<</SYS>>\n\n{{ .Content }} [/INST]" in llama2
    )
    assert "{{-" not in modelfile + llama2  # trim markers would eat the template's newlines


def test_export_script_is_generated_per_stage(write_spec, tmp_path):
    from ffc.compiler.build import build_files
    from ffc.compiler.loader import load_spec

    from .conftest import MINIMAL_SPEC

    _, sft = build_files(
        load_spec(write_spec(MINIMAL_SPEC), ["export.gguf=q8_0", "export.ollama=true"]), tmp_path / "a"
    )
    assert {"export.py", "chat.py", "serve.py", "eval.py"} <= set(sft)
    assert (
        'default=["q8_0"]' in sft["export.py"].decode()
        and 'ADAPTERS = [str(RUN_DIR / "output")]' in sft["export.py"].decode()
    )
    _, rm = build_files(load_spec(write_spec(MINIMAL_SPEC.replace("stage: sft", "stage: rm"))), tmp_path / "b")
    assert not {"export.py", "chat.py", "serve.py"} & set(rm)
    pt_spec = MINIMAL_SPEC.replace("stage: sft", "stage: pt").replace("  template: chatml\n", "")
    _, pt = build_files(load_spec(write_spec(pt_spec, "pt.yaml")), tmp_path / "c")
    assert "export.py" in pt and "chat.py" not in pt and "TEMPLATE" not in pt["export.py"].decode()


@pytest.fixture(scope="module")
def qwen2(demo, tmp_path_factory):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(demo / "tiny-model")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(1)
    return Qwen2ForCausalLM(config).eval(), tokenizer


def test_qwen2_gguf_keeps_biases_and_rope_layout(qwen2, tmp_path):
    import gguf

    model, tokenizer = qwen2
    reader = gguf.GGUFReader(str(write_gguf(model, tokenizer, tmp_path / "q.gguf", "f16")))
    assert reader.fields["general.architecture"].contents() == "qwen2"
    tensors = {t.name: t for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.1.attn_v.bias"} <= set(tensors)
    q = gguf.quants.dequantize(tensors["blk.0.attn_q.weight"].data, tensors["blk.0.attn_q.weight"].tensor_type)
    original = model.state_dict()["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert np.abs(q.reshape(original.shape) - original).max() < 1e-3  # qwen2 keeps transformers' rotary layout


def test_qwen2_gguf_runs_in_llama_cpp_like_transformers(qwen2, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    model, tokenizer = qwen2
    path = write_gguf(model, tokenizer, tmp_path / "q.gguf", "f16")
    reference = model.half().float()
    prompt = tokenizer("What is 2 plus 3?", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = reference.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None)[
            0, len(prompt) :
        ].tolist()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    got = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        got.append(token)
        if len(got) == len(expected):
            break
    assert got == expected


def _tokenizer_with_split(regex):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ffc.devtools.demo import corpus

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=regex is None)
    tok.pre_tokenizer = (
        byte_level
        if regex is None
        else pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"), byte_level])
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus() + ["it's 2024, 12345 apples\n\n  and 你好"] * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.mark.parametrize("style", ["gpt-2", "llama-bpe", "qwen2"])
def test_gguf_tokenizes_like_transformers(tmp_path, style):
    from transformers import LlamaConfig, LlamaForCausalLM

    from ffc.runtime.export import _LLAMA3_SPLIT, _QWEN2_SPLIT, pre_tokenizer_name

    tokenizer = _tokenizer_with_split({"gpt-2": None, "llama-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}[style])
    assert pre_tokenizer_name(json.loads(tokenizer.backend_tokenizer.to_str())) == style
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)  # fmt: skip
    path = write_gguf(LlamaForCausalLM(config), tokenizer, tmp_path / "t.gguf", "f16")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False, vocab_only=True)
    for text in ["What is 12345 plus 7? it's RED,  blue\n\n\nend", "你好 world 2024!! don't"]:
        assert (
            llm.tokenize(text.encode(), add_bos=False, special=True)
            == tokenizer(text, add_special_tokens=False)["input_ids"]
        )


def test_unknown_pre_tokenizer_is_refused():
    from ffc.runtime.export import pre_tokenizer_name

    with pytest.raises(ExportError, match="convert_hf_to_gguf.py"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}})


@pytest.mark.parametrize("kind", ["f32", "q6_k", "q5_k_m", "q4_k_m", "q4_0"])
def test_gguf_llama_cpp_quantizations_read_back_and_generate(exported, tmp_path, kind):
    """f32 from the gguf writer, the others from llama.cpp's quantizer: each reads back with the gguf
    reader (every tensor, the tokenizer) and generates with llama-cpp-python."""
    import gguf

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    _, model, tokenizer = exported
    path = write_gguf(model, tokenizer, tmp_path / f"m-{kind}.gguf", kind, name="tiny")
    assert not list(tmp_path.glob("*.tmp"))  # the intermediate f32 file is gone
    reader = gguf.GGUFReader(str(path))
    file_type = reader.fields["general.file_type"]
    expected = {"f32": "ALL_F32", "q6_k": "MOSTLY_Q6_K", "q5_k_m": "MOSTLY_Q5_K_M", "q4_k_m": "MOSTLY_Q4_K_M"}
    assert gguf.LlamaFileType(int(file_type.parts[file_type.data[0]][0])).name == expected.get(kind, "MOSTLY_Q4_0")
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {gguf_name(name) for name in model.state_dict()}
    types = {t.tensor_type.name for t in reader.tensors if len(t.shape) > 1}
    if kind == "f32":
        assert types == {"F32"}
    else:  # the tiny model's 64-wide rows are too narrow for K blocks (256): llama.cpp falls back per tensor
        assert "F32" not in types and types - {"F16"}, types
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, verbose=False, seed=0)
    prompt = llm.tokenize(TEMPLATES["chatml"].render(CHAT[:2], add_generation_prompt=True).text.encode(), special=True)
    generated = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        generated.append(token)
        if len(generated) == 4:
            break
    assert len(generated) == 4


def test_onnx_export_matches_transformers_logits(exported, tmp_path):
    """model.onnx runs in onnxruntime with the merged model's logits, at other batch sizes and lengths than
    traced and with left padding."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from transformers import AutoModelForCausalLM

    from ffc.runtime.export import write_onnx

    out, model, _ = exported
    path = write_onnx(AutoModelForCausalLM.from_pretrained(out), tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    reference = AutoModelForCausalLM.from_pretrained(out).eval()
    torch.manual_seed(0)
    for shape in ((2, 20), (1, 1)):
        ids = torch.randint(5, 200, shape)
        mask = torch.ones_like(ids)
        if shape[1] > 5:
            mask[0, :5] = 0  # left padding
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).logits.numpy()
        keep = mask.numpy().astype(bool)
        assert np.abs(got - expected)[keep].max() < 1e-4
