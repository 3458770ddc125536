"""Build Duet's tiny Qwen3 test model: real architecture, real vocabulary, seconds of training.

Run with an interpreter that has torch and transformers (the vLLM virtualenv has both):

    python -m duet.tinymodel.build --out ~/.cache/duet/models/qwen3-duet-tiny-v3

The result is a Hugging Face model directory that vLLM serves as it is and that `ollama create`
converts: `Qwen3ForCausalLM` (2 layers, head_dim 64, tied embeddings, bf16), Qwen's 151,643 BPE
ranks plus Qwen3's added tokens, and Qwen3's chat template.

How it trains fast on a CPU: the corpus uses a few hundred distinct tokens, so the model is trained
with an embedding table of just those rows, and every other row of the final 151,936-row table is
zero. With tied embeddings a zero row always scores logit 0, so during training the softmax gets
one extra column worth log(number of zero rows): exactly the full-vocabulary loss, at a sliver of
the cost. The model thereby learns to put its answer tokens above every unused token.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from duet.tinymodel import corpus
from duet.tinymodel.tokenizer import ADDED_TOKEN_IDS, QWEN3_VOCAB_SIZE, write_tokenizer

# Bump when anything below changes what gets built; the cache directory is keyed by it.
BUILD_VERSION = "v3"
MODEL_NAME = f"qwen3-duet-tiny-{BUILD_VERSION}"
CHAT_TEMPLATE = (Path(__file__).parent / "qwen3_chat_template.jinja").read_text(encoding="utf-8")
CONTEXT_LENGTH = 4096

ARCHITECTURE = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,  # vLLM's CPU attention rejects small head sizes such as 16
}


def cached_model(cache: Path) -> Path:
    """Where the built model lives in Duet's cache (`duet dev` builds it there)."""
    return cache / "models" / MODEL_NAME


def qwen3_config() -> dict:
    """config.json as Qwen3 checkpoints lay it out (Ollama reads rope_theta at top level)."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": QWEN3_VOCAB_SIZE,
        **ARCHITECTURE,
        "hidden_act": "silu",
        "max_position_embeddings": CONTEXT_LENGTH,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": ARCHITECTURE["num_hidden_layers"],
        "bos_token_id": ADDED_TOKEN_IDS["<|endoftext|>"],
        "eos_token_id": ADDED_TOKEN_IDS["<|im_end|>"],
    }


def generation_config() -> dict:
    # Qwen3's thinking-mode sampling defaults; Duet always sends its own per request.
    return {
        "bos_token_id": ADDED_TOKEN_IDS["<|endoftext|>"],
        "eos_token_id": [ADDED_TOKEN_IDS["<|im_end|>"], ADDED_TOKEN_IDS["<|endoftext|>"]],
        "pad_token_id": ADDED_TOKEN_IDS["<|endoftext|>"],
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
    }


def encode_samples(tokenizer, samples: list[corpus.Sample]) -> list[tuple[list[int], int]]:
    """(token ids, index where the completion starts) for each sample."""
    encoded = []
    for sample in samples:
        prompt = tokenizer.apply_chat_template(
            corpus.messages(sample),
            tools=list(sample.tools) or None,
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=sample.thinking,
        )
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        completion_ids = tokenizer.encode(corpus.completion(sample), add_special_tokens=False)
        encoded.append((prompt_ids + completion_ids, len(prompt_ids)))
    return encoded


def batch_loss(model, batch, compact: dict[int, int], unused_logit: float):
    """Summed cross-entropy over the completion tokens of `batch`, and how many there were."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    inputs = torch.zeros(len(batch), width, dtype=torch.long)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for row, (ids, start) in enumerate(batch):
        mapped = torch.tensor([compact[t] for t in ids])
        inputs[row, : len(ids)] = mapped
        mask[row, : len(ids)] = 1
        # position p predicts token p+1; learn only the completion
        targets[row, start - 1 : len(ids) - 1] = mapped[start:]
    hidden = model.model(input_ids=inputs, attention_mask=mask).last_hidden_state
    logits = hidden @ model.model.embed_tokens.weight.T
    # One more column stands for every zero row of the full table (see the module docstring).
    logits = torch.cat([logits, torch.full_like(logits[..., :1], unused_logit)], dim=-1)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
        reduction="sum",
    )  # fmt: skip
    return loss, int((targets != -100).sum())


def train(encoded: list[tuple[list[int], int]], steps: int, seed: int):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    used = sorted({token for ids, _ in encoded for token in ids})
    compact = {token: i for i, token in enumerate(used)}
    config = qwen3_config() | {"vocab_size": len(used), "torch_dtype": "float32"}
    config.pop("architectures")
    config.pop("model_type")
    model = Qwen3ForCausalLM(Qwen3Config(**config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    unused_logit = math.log(QWEN3_VOCAB_SIZE - len(used))
    rng = random.Random(seed)
    # Every step learns from 14 chats and 2 endless stories, padded separately: the story is
    # ~10x longer than a chat, and one batch padded to its length would train ~5x slower.
    long_threshold = 300
    short = [sample for sample in encoded if len(sample[0]) <= long_threshold]
    long = [sample for sample in encoded if len(sample[0]) > long_threshold]
    started = time.monotonic()
    for step in range(steps):
        batches = [rng.sample(short, 14), rng.sample(long, 2)] if long else [rng.sample(short, 16)]
        losses = [batch_loss(model, batch, compact, unused_logit) for batch in batches]
        loss = sum(total for total, _ in losses) / sum(count for _, count in losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  {time.monotonic() - started:.0f}s")
    return model, used


def save_weights(model, used: list[int], directory: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to the embeddings, as in Qwen3's small checkpoints
        tensors[name] = tensor.detach().to(torch.bfloat16).contiguous()
    compact = tensors["model.embed_tokens.weight"]
    full = torch.zeros(QWEN3_VOCAB_SIZE, compact.shape[1], dtype=torch.bfloat16)
    full[torch.tensor(used)] = compact
    tensors["model.embed_tokens.weight"] = full
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})


def build(out: Path, steps: int = 500, samples: int = 4000, seed: int = 0) -> Path:
    from transformers import PreTrainedTokenizerFast

    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    write_tokenizer(partial, CHAT_TEMPLATE, CONTEXT_LENGTH)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(partial / "tokenizer.json"))
    tokenizer.chat_template = CHAT_TEMPLATE
    encoded = encode_samples(tokenizer, corpus.samples(samples, seed=seed))
    model, used = train(encoded, steps=steps, seed=seed)
    save_weights(model, used, partial)
    (partial / "config.json").write_text(json.dumps(qwen3_config(), indent=2))
    (partial / "generation_config.json").write_text(json.dumps(generation_config(), indent=2))
    partial.replace(out)  # only a finished build ever appears under the final name
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    if (args.out / "model.safetensors").exists():
        print(f"{args.out} is already built")
        return
    started = time.monotonic()
    build(args.out, steps=args.steps)
    print(f"built {args.out} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
