"""LoRA fine-tuning of the embedded model on llm4tag's generation set D and judge set D′.

Standalone on purpose — it imports only torch, transformers, peft, gguf and tqdm — so the same
file runs inside ``llm4tag train`` and, copied with its data, on a machine that has nothing but
those (a GPU box). ``python agent/training/finetune.py --help``.

Input: ``train.jsonl(.gz)`` from ``agent.training.datasets``; each record holds ``prompt`` (the
chat-templated prompt, exactly as inference renders it, ending where the answer starts),
``answer``, ``task`` (generate | judge), ``split`` (train | heldout) and the sample's ``id``.
The loss is on the answer tokens only (for the judge: the one Yes/No token that inference reads),
and only those positions go through the vocabulary projection. What makes it fit a CPU:

- a sample's judge records share everything but their last lines, so they are packed into one
  sequence (the shared prefix once, each tail attending to it and to itself: ``pack``);
- bfloat16 autocast where the CPU has AVX512-BF16/AMX (the LoRA weights stay float32);
- length-bucketed steps of ``--batch-size`` records, split into micro-batches of at most
  ``--batch-tokens`` padded tokens, so long generation prompts fit in memory;
- with ``--time-limit`` the records train in the set's order (most useful first) until the time
  is up. Checkpoints (adapter, optimizer, scheduler, step) are written every ``--save-every``
  steps and at the end; a re-run resumes from the last one.

Output in ``--out``: ``adapter/`` (peft), ``train_log.json`` (losses, held-out loss and judge
accuracy before and after, seconds, device).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_records(path: str | Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_base(base_gguf: str | Path, dtype=None):
    """Tokenizer and float model de-quantized from a GGUF file (transformers' GGUF loader)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(base_gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    model = AutoModelForCausalLM.from_pretrained(str(base.parent), gguf_file=base.name, dtype=dtype or torch.float32)
    # GGUF-loaded models carry quantizer markers that make peft/save_pretrained refuse to work;
    # the weights are plain floats by now.
    model.hf_quantizer = None
    model.is_quantized = False
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    return tokenizer, model


def encode(tokenizer, record: dict, max_tokens: int) -> dict | None:
    """One record as token ids: the prompt and the answer tokens the loss is on (for the judge, the
    one Yes/No token inference reads; for generation, the JSON array and ``<|im_end|>``)."""
    prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
    answer = tokenizer(record["answer"], add_special_tokens=False)["input_ids"]
    if record["task"] == "judge":
        answer = answer[:1]
    else:
        answer = answer + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    if len(prompt) + len(answer) > max_tokens:
        return None
    return {"prompt": prompt, "answer": answer, "task": record["task"], "id": record.get("id")}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def pack(examples: list[dict], max_tokens: int) -> list[dict]:
    """Sequences to train on, in the records' order. A sample's judge records differ only in their
    last lines (the content comes first, the tag last), so they are packed into one sequence: the
    shared prefix once, then each record's own tail, which attends to the prefix and to itself
    only (``segment``) and continues its positions — the same logits as separate sequences, for
    a fraction of the tokens. Generation records stay one per sequence."""
    sequences: list[dict] = []
    i = 0
    while i < len(examples):
        group = [examples[i]]
        if examples[i]["task"] == "judge":
            while (
                i + len(group) < len(examples)
                and examples[i + len(group)]["task"] == "judge"
                and examples[i + len(group)]["id"] == examples[i]["id"]
            ):
                group.append(examples[i + len(group)])
        i += len(group)
        prefix = min(_common_prefix(group[0]["prompt"], e["prompt"]) for e in group) if len(group) > 1 else len(group[0]["prompt"])
        prefix = min(prefix, min(len(e["prompt"]) for e in group) - 1) if len(group) > 1 else prefix

        def start_sequence() -> dict:
            return {
                "input_ids": list(group[0]["prompt"][:prefix]),
                "position_ids": list(range(prefix)),
                "segment": [0] * prefix,
                "targets": [],
                "tasks": [],
                "records": 0,
            }

        seq = start_sequence()
        for k, e in enumerate(group, 1):
            tail = e["prompt"][prefix:] + (e["answer"][:-1] if e["task"] == "generate" else [])
            if seq["records"] and len(seq["input_ids"]) + len(tail) > max_tokens:  # too long together: start another sequence
                sequences.append(seq)
                seq = start_sequence()
            segment = k if len(group) > 1 else 0
            start = len(seq["input_ids"])
            seq["input_ids"] += tail
            seq["position_ids"] += list(range(prefix, prefix + len(tail)))
            seq["segment"] += [segment] * len(tail)
            first = start + len(e["prompt"]) - prefix - 1  # the last prompt token predicts the first answer token
            seq["targets"] += [(first + j, tok) for j, tok in enumerate(e["answer"])]
            seq["tasks"] += [e["task"]] * len(e["answer"])
            seq["records"] += 1
        sequences.append(seq)
    return sequences


def batches(sequences: list[dict], batch_size: int, seed: int, window: int = 0) -> list[list[dict]]:
    """Length-bucketed batches of about ``batch_size`` records (little padding), in a seeded random
    order; with ``window`` > 0 the sequences are bucketed within consecutive windows of that many
    batches and the windows kept in order, so the first records (the most useful) train first."""
    span = window * batch_size if window else len(sequences)
    out: list[list[dict]] = []
    for w in range(0, len(sequences), max(1, span)):
        order = sorted(sequences[w : w + span], key=lambda s: len(s["input_ids"]))
        groups, group, count = [], [], 0
        for seq in order:
            group.append(seq)
            count += seq["records"]
            if count >= batch_size:
                groups.append(group)
                group, count = [], 0
        if group:
            groups.append(group)
        random.Random(seed + w).shuffle(groups)
        out += groups
    return out


def micro_batches(group: list[dict], batch_tokens: int) -> list[list[dict]]:
    """``group`` split so that each piece holds at most ``batch_tokens`` padded tokens (activations
    for backpropagation take about 1.3 MB per token with SmolLM2-135M in bfloat16)."""
    parts: list[list[dict]] = [[]]
    for seq in sorted(group, key=lambda s: len(s["input_ids"])):
        width = max([len(seq["input_ids"])] + [len(s["input_ids"]) for s in parts[-1]])
        if parts[-1] and width * (len(parts[-1]) + 1) > batch_tokens:
            parts.append([])
        parts[-1].append(seq)
    return parts


def collate(group: list[dict], pad_id: int, device):
    """Token ids, positions, the attention mask (batch, 1, L, L: causal, and a packed record's tail
    sees only the shared prefix and itself) and the answer positions with their tokens."""
    import torch

    width = max(len(s["input_ids"]) for s in group)
    ids = torch.full((len(group), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(group), width), dtype=torch.long)
    segment = torch.full((len(group), width), -1, dtype=torch.long)
    rows, cols, tokens, tasks = [], [], [], []
    for i, s in enumerate(group):
        n = len(s["input_ids"])
        ids[i, :n] = torch.tensor(s["input_ids"])
        positions[i, :n] = torch.tensor(s["position_ids"])
        segment[i, :n] = torch.tensor(s["segment"])
        for pos, tok in s["targets"]:
            rows.append(i)
            cols.append(pos)
            tokens.append(tok)
        tasks += s["tasks"]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    q, k = segment[:, :, None], segment[:, None, :]
    mask = causal & (k >= 0) & ((k == 0) | (k == q))
    mask |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves (no empty softmax rows)
    return {
        "input_ids": ids.to(device),
        "position_ids": positions.to(device),
        "attention_mask": mask[:, None].to(device),
        "rows": torch.tensor(rows, device=device),
        "cols": torch.tensor(cols, device=device),
        "tokens": torch.tensor(tokens, device=device),
        "tasks": tasks,
    }


def answer_logits(model, batch):
    """Logits at the answer positions only: the hidden states go through the vocabulary projection
    (49k × 576 for SmolLM2) for a few positions instead of every token of the prompt."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    return base.lm_head(hidden[batch["rows"], batch["cols"]]).float()


def cpu_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def evaluate_heldout(model, tokenizer, sequences: list[dict], device, batch_tokens: int, autocast) -> dict:
    """Mean answer-token loss per task, and the judge's Yes/No accuracy, on held-out records."""
    import torch

    if not sequences:
        return {}
    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer("No", add_special_tokens=False)["input_ids"][0]
    losses: dict[str, list[float]] = {}
    right = total = 0
    model.eval()
    with torch.no_grad():
        for group in micro_batches(sequences, batch_tokens):
            batch = collate(group, tokenizer.pad_token_id or 0, device)
            with autocast():
                logits = answer_logits(model, batch)
            token_loss = torch.nn.functional.cross_entropy(logits, batch["tokens"], reduction="none")
            for j, task in enumerate(batch["tasks"]):
                losses.setdefault(task, []).append(float(token_loss[j]))
                if task == "judge":
                    said_yes = logits[j, yes] > logits[j, no]
                    right += int(bool(said_yes) == (int(batch["tokens"][j]) == yes))
                    total += 1
    model.train()
    out = {f"loss_{task}": sum(v) / len(v) for task, v in losses.items()}
    if total:
        out["judge_accuracy"] = right / total
        out["judge_pairs"] = total
    return out


def train(args) -> dict:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(args.seed)
    tokenizer, model = load_base(args.base)
    records = read_records(args.data)
    if args.max_samples:
        records = records[: args.max_samples]
    encoded = [(r["split"], encode(tokenizer, r, args.max_tokens)) for r in records]
    dropped = sum(e is None for _, e in encoded)
    train_set = pack([e for s, e in encoded if e is not None and s == "train"], args.max_tokens)
    heldout = pack([e for s, e in encoded if e is not None and s == "heldout"], args.max_tokens)
    if not train_set:
        raise SystemExit(f"no training records in {args.data} (after dropping {dropped} longer than {args.max_tokens} tokens)")
    train_records = sum(s["records"] for s in train_set)
    precision = args.precision if args.precision != "auto" else ("bf16" if device == "cuda" or cpu_bf16() else "fp32")

    def autocast():
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16")

    model.to(device)
    checkpoint = out / "checkpoint"
    if (checkpoint / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    elif getattr(args, "init_adapter", None):  # --since-last: go on from the previous fine-tune
        model = PeftModel.from_pretrained(model, str(args.init_adapter), is_trainable=True)
    else:
        config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    before = (
        evaluate_heldout(model, tokenizer, heldout, device, 2 * args.batch_tokens, autocast)
        if heldout and not checkpoint.exists()
        else None
    )
    window = 8 if args.time_limit else 0  # with a time budget the first records (the most useful) train first
    plan = [batches(train_set, args.batch_size, args.seed + epoch, window) for epoch in range(args.epochs)]
    steps_per_epoch = len(plan[0])
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup = max(1, total_steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total_steps - s) / max(1, total_steps - warmup))
    )
    step, log = 0, {"losses": [], "records_done": 0, "tokens_done": 0}
    resumed_from = 0
    state_file = checkpoint / "trainer_state.pt"
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, log, before = state["step"], state["log"], state["before"]
        resumed_from = step
    model.train()
    loop_started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="fine-tuning", unit="step")
    out_of_time = False
    for epoch in range(step // steps_per_epoch, args.epochs):
        for i, group in enumerate(plan[epoch]):
            if epoch * steps_per_epoch + i < step:
                continue  # resumed: skip what was done
            targets = sum(len(seq["targets"]) for seq in group)
            loss = 0.0
            for part in micro_batches(group, args.batch_tokens):  # one optimizer step, in pieces that fit in memory
                batch = collate(part, tokenizer.pad_token_id or 0, device)
                with autocast():
                    logits = answer_logits(model, batch)
                part_loss = torch.nn.functional.cross_entropy(logits, batch["tokens"], reduction="sum") / targets
                part_loss.backward()
                loss += part_loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            log["losses"].append(round(loss, 4))
            log["records_done"] = log.get("records_done", 0) + sum(s["records"] for s in group)
            log["tokens_done"] = log.get("tokens_done", 0) + sum(len(s["input_ids"]) for s in group)
            bar.update(1)
            bar.set_postfix(loss=f"{log['losses'][-1]:.3f}", epoch=epoch + 1)
            if args.save_every and step % args.save_every == 0:
                save_checkpoint(model, optimizer, scheduler, step, log, before, checkpoint)
            if args.time_limit and time.perf_counter() - started > args.time_limit * 60:
                out_of_time = True
                break
        if out_of_time:
            log["stopped_at_time_limit"] = True
            break
    bar.close()
    train_seconds = time.perf_counter() - loop_started
    after = evaluate_heldout(model, tokenizer, heldout, device, 2 * args.batch_tokens, autocast) if heldout else None
    save_checkpoint(model, optimizer, scheduler, step, log, before, checkpoint)
    model.save_pretrained(str(out / "adapter"))
    result = {
        "base": str(args.base),
        "data": str(args.data),
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "train_records": train_records,
        "train_sequences": len(train_set),
        "heldout_records": sum(s["records"] for s in heldout),
        "dropped_too_long": dropped,
        "precision": precision,
        "records_trained": log.get("records_done", 0),
        "seconds_per_record": round(train_seconds / max(1, log.get("records_done", 0)), 3),
        "epochs": args.epochs,
        "steps": step,
        "resumed_from_step": resumed_from,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lora_r": args.lora_r,
        "heldout_before": before,
        "heldout_after": after,
        "seconds": round(time.perf_counter() - started, 1),
        "train_seconds": round(train_seconds, 1),
        "stopped_at_time_limit": log.get("stopped_at_time_limit", False),
        "losses": log["losses"],
    }
    (out / "train_log.json").write_text(json.dumps(result, indent=2))
    return result


def save_checkpoint(model, optimizer, scheduler, step, log, before, checkpoint: Path) -> None:
    import torch

    model.save_pretrained(str(checkpoint))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step, "log": log, "before": before},
        checkpoint / "trainer_state.pt.tmp",
    )
    (checkpoint / "trainer_state.pt.tmp").replace(checkpoint / "trainer_state.pt")


def finetune_args(base, data, out, **overrides) -> argparse.Namespace:
    """The command line's settings (its defaults, then ``overrides``) for calling ``train`` from Python."""
    args = parse_args(["--base", str(base), "--data", str(data), "--out", str(out)])
    unknown = set(overrides) - set(vars(args))
    if unknown:
        raise TypeError(f"unknown fine-tuning settings {sorted(unknown)}")
    vars(args).update(overrides)
    return args


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="base model GGUF (the shipped SmolLM2 or any Llama-family GGUF)")
    ap.add_argument("--data", required=True, help="train.jsonl(.gz) from llm4tag train --prepare-only")
    ap.add_argument("--out", required=True, help="output folder (adapter/, checkpoint/, train_log.json)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--batch-tokens",
        type=int,
        default=4096,
        help="at most this many padded tokens go through the model at once (a step of --batch-size records is split to fit)",
    )
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--max-samples", type=int, default=None, help="use only the first N records")
    ap.add_argument("--max-tokens", type=int, default=2048, help="records longer than this are dropped (and counted)")
    ap.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps (0: only at the end)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after this many minutes, the adapter so far kept; the records come in the set's order (most useful first)",
    )
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="auto: bfloat16 autocast on CUDA and on CPUs with AVX512-BF16/AMX, else float32 (LoRA weights stay float32)",
    )
    ap.add_argument("--init-adapter", default=None, help="start from this adapter (continued training) instead of a fresh LoRA")
    return ap.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in train(parse_args()).items() if k != "losses"}, indent=2))
