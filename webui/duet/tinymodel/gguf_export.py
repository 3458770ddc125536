"""Write the tiny model as a GGUF file for Ollama, from the Hugging Face directory vLLM serves.

Why not let `ollama create` convert the safetensors: Ollama v0.24.0's safetensors→GGUF converter
no longer lists `Qwen3ForCausalLM` (its convert/convert.go switch goes from Qwen2 straight to the
Qwen3 vision and Qwen3-Next models; plain Qwen3 is registered only for the experimental MLX
engine), so `ollama create` answers `unsupported architecture "Qwen3ForCausalLM"`. GGUF is also
what users run on GPUs (Qwen/Qwen3-14B-GGUF), so Ollama then loads the model the same way there
and here. The file is written with `gguf`, the GGUF library llama.cpp publishes on PyPI, using
the tensor and metadata names of GGUF's `qwen3` architecture:

    model.embed_tokens            token_embd        (tied: Ollama falls back to it for output)
    model.layers.N.self_attn.q_proj   blk.N.attn_q  (likewise k, v, o → attn_k, attn_v, attn_output)
    ...q_norm / k_norm            attn_q_norm / attn_k_norm
    input_layernorm               attn_norm
    post_attention_layernorm      ffn_norm
    mlp.gate/up/down_proj         ffn_gate / ffn_up / ffn_down
    model.norm                    output_norm

Weights are stored as F32: bf16 → f32 is exact, so both engines compute from identical values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from duet.tinymodel.tokenizer import QWEN3_VOCAB_SIZE

LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
# GGUF token types (llama.cpp's llama_token_type).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def gguf_tensor_name(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    prefix = "model.layers."
    if name.startswith(prefix):
        index, rest = name[len(prefix) :].split(".", 1)
        if rest in LAYER_NAMES:
            return f"blk.{index}.{LAYER_NAMES[rest]}"
    raise ValueError(f"no GGUF name for tensor {name!r}")


def vocabulary(model_dir: Path) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges), padded to the embedding's row count."""
    document = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    by_id: dict[int, str] = {i: t for t, i in document["model"]["vocab"].items()}
    types: dict[int, int] = dict.fromkeys(by_id, NORMAL)
    for added in document["added_tokens"]:
        by_id[added["id"]] = added["content"]
        types[added["id"]] = CONTROL if added["special"] else USER_DEFINED
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(QWEN3_VOCAB_SIZE)]
    token_types = [types.get(i, UNUSED) for i in range(QWEN3_VOCAB_SIZE)]
    merges = [" ".join(pair) for pair in document["model"]["merges"]]
    return tokens, token_types, merges


def export(model_dir: Path, out: Path) -> Path:
    import gguf
    from safetensors.torch import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    partial = out.with_name(out.name + ".partial")  # only a finished file gets the final name
    writer = gguf.GGUFWriter(str(partial), "qwen3")
    writer.add_name(model_dir.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_key_length(config["head_dim"])
    writer.add_value_length(config["head_dim"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])

    tokens, token_types, merges = vocabulary(model_dir)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(tokens.index(tokenizer_config["pad_token"]))
    # Qwen3 has no BOS in its prompts; Ollama adds one unless told not to.
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer_config["chat_template"])

    for name, tensor in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        writer.add_tensor(gguf_tensor_name(name), tensor.float().numpy())

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    export(args.model_dir, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
