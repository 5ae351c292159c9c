"""LoRA fine-tuning of the embedded model on llm4tag's generation set D and judge set D′.

Standalone on purpose — it imports only torch, transformers, peft, gguf and tqdm — so the same
file runs inside ``llm4tag train`` and, copied with its data, on a machine that has nothing but
those (a GPU box). ``python agent/training/finetune.py --help``.

Input: ``train.jsonl(.gz)`` from ``agent.training.datasets``; each record holds ``prompt`` (the
chat-templated prompt, exactly as inference renders it, ending where the answer starts),
``answer``, ``task`` (generate | judge) and ``split`` (train | heldout). The loss is on the
answer tokens only (for the judge: the one Yes/No token that inference reads). Batches are
length-bucketed with dynamic padding. Checkpoints (adapter, optimizer, scheduler, step) are
written every ``--save-every`` steps and at the end; a re-run resumes from the last one.
Output in ``--out``: ``adapter/`` (peft), ``train_log.json`` (losses, held-out loss and judge
accuracy before and after, seconds, device).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
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
    prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
    answer = tokenizer(record["answer"], add_special_tokens=False)["input_ids"]
    if record["task"] == "judge":
        answer = answer[:1]  # inference reads the first answer token's Yes/No logits
    else:
        answer = answer + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    if len(prompt) + len(answer) > max_tokens:
        return None
    return {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer, "task": record["task"]}


def batches(examples: list[dict], batch_size: int, seed: int) -> list[list[dict]]:
    """Length-bucketed batches (little padding), in a seeded random order."""
    order = sorted(examples, key=lambda e: len(e["input_ids"]))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(groups)
    return groups


def collate(group: list[dict], pad_id: int, device):
    import torch

    width = max(len(e["input_ids"]) for e in group)
    ids = torch.full((len(group), width), pad_id, dtype=torch.long)
    labels = torch.full((len(group), width), -100, dtype=torch.long)
    mask = torch.zeros((len(group), width), dtype=torch.long)
    for i, e in enumerate(group):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def evaluate_heldout(model, tokenizer, examples: list[dict], device, batch_size: int) -> dict:
    """Mean answer-token loss per task, and the judge's Yes/No accuracy, on held-out records."""
    import torch

    if not examples:
        return {}
    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer("No", add_special_tokens=False)["input_ids"][0]
    losses: dict[str, list[float]] = {}
    right = total = 0
    model.eval()
    with torch.no_grad():
        for group in batches(examples, batch_size, 0):
            ids, labels, mask = collate(group, tokenizer.pad_token_id or 0, device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            token_loss = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none")
            for i, e in enumerate(group):
                keep = shift_labels[i] != -100
                losses.setdefault(e["task"], []).append(float(token_loss[i][keep].mean()))
                if e["task"] == "judge":
                    pos = int(keep.nonzero()[0])
                    said_yes = shift_logits[i, pos, yes] > shift_logits[i, pos, no]
                    right += int(bool(said_yes) == (int(shift_labels[i, pos]) == yes))
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
    train_set = [e for s, e in encoded if e is not None and s == "train"]
    heldout = [e for s, e in encoded if e is not None and s == "heldout"]
    if not train_set:
        raise SystemExit(f"no training records in {args.data} (after dropping {dropped} longer than {args.max_tokens} tokens)")
    model.to(device)
    checkpoint = out / "checkpoint"
    if (checkpoint / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    elif getattr(args, "init_adapter", None):  # --since-last: go on from the previous fine-tune
        model = PeftModel.from_pretrained(model, str(args.init_adapter), is_trainable=True)
    else:
        config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    before = evaluate_heldout(model, tokenizer, heldout, device, args.batch_size) if heldout and not checkpoint.exists() else None
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup = max(1, total_steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    step, log = 0, {"losses": []}
    resumed_from = 0
    state_file = checkpoint / "trainer_state.pt"
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, log, before = state["step"], state["log"], state["before"]
        resumed_from = step
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    model.train()
    loop_started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="fine-tuning", unit="step")
    for epoch in range(step // steps_per_epoch, args.epochs):
        for i, group in enumerate(batches(train_set, args.batch_size, args.seed + epoch)):
            if epoch * steps_per_epoch + i < step:
                continue  # resumed: skip what was done
            ids, labels, mask = collate(group, tokenizer.pad_token_id or 0, device)
            with autocast:
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            log["losses"].append(round(loss.item(), 4))
            bar.update(1)
            bar.set_postfix(loss=f"{log['losses'][-1]:.3f}", epoch=epoch + 1)
            if args.save_every and step % args.save_every == 0:
                save_checkpoint(model, optimizer, scheduler, step, log, before, checkpoint)
            if args.time_limit and time.perf_counter() - started > args.time_limit * 60:
                break
        if args.time_limit and time.perf_counter() - started > args.time_limit * 60:
            log["stopped_at_time_limit"] = True
            break
    bar.close()
    train_seconds = time.perf_counter() - loop_started
    after = evaluate_heldout(model, tokenizer, heldout, device, args.batch_size) if heldout else None
    save_checkpoint(model, optimizer, scheduler, step, log, before, checkpoint)
    model.save_pretrained(str(out / "adapter"))
    result = {
        "base": str(args.base), "data": str(args.data), "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "train_records": len(train_set), "heldout_records": len(heldout), "dropped_too_long": dropped,
        "epochs": args.epochs, "steps": step, "resumed_from_step": resumed_from, "batch_size": args.batch_size, "lr": args.lr, "lora_r": args.lora_r,
        "heldout_before": before, "heldout_after": after, "seconds": round(time.perf_counter() - started, 1), "train_seconds": round(train_seconds, 1),
        "stopped_at_time_limit": log.get("stopped_at_time_limit", False), "losses": log["losses"],
    }
    (out / "train_log.json").write_text(json.dumps(result, indent=2))
    return result


def save_checkpoint(model, optimizer, scheduler, step, log, before, checkpoint: Path) -> None:
    import torch

    model.save_pretrained(str(checkpoint))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step, "log": log, "before": before},
               checkpoint / "trainer_state.pt.tmp")
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
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--max-samples", type=int, default=None, help="use only the first N records")
    ap.add_argument("--max-tokens", type=int, default=2048, help="records longer than this are dropped (and counted)")
    ap.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps (0: only at the end)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--time-limit", type=float, default=None, help="stop after this many minutes (the adapter so far is kept)")
    ap.add_argument("--init-adapter", default=None, help="start from this adapter (continued training) instead of a fresh LoRA")
    return ap.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in train(parse_args()).items() if k != "losses"}, indent=2))
