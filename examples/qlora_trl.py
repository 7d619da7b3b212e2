"""QLoRA with TRL's SFTTrainer on the backend attnpick proves: the guide's code, one import changed.

    python examples/qlora_trl.py                       # the embedded tiny EXAONE and data, on any machine
    python examples/qlora_trl.py LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct my_data.jsonl
"""

import sys

import torch
from trl import SFTConfig, SFTTrainer

from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel
from attnpick.training.data import chat_dataset

model_name = sys.argv[1] if len(sys.argv) > 1 else "tiny-exaone"
data_file = sys.argv[2] if len(sys.argv) > 2 else "embedded"
max_seq_length = 256

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name=model_name,
    max_seq_length=max_seq_length,
    dtype=None,
    load_in_4bit=True,
)
model = FastLanguageModel.get_peft_model(
    model,
    r=16,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha=16,
    lora_dropout=0,
    bias="none",
    use_gradient_checkpointing="unsloth",
    random_state=3407,
)
print("attention backend:", model.attnpick_report.chosen)

# Any layout (Alpaca/KoAlpaca, ShareGPT, chat, prompt/completion; JSON, JSONL, Parquet, CSV, a hub dataset) in the
# shape TRL expects: {"messages": [{"role": ..., "content": ...}, ...]}; malformed rows are dropped and counted.
dataset, dropped = chat_dataset(data_file)
print(f"{len(dataset)} conversations, {dropped.count} rows dropped")

trainer = SFTTrainer(
    model=model,
    processing_class=tokenizer,
    train_dataset=dataset,
    args=SFTConfig(
        output_dir="runs/qlora-trl",
        max_steps=30,
        per_device_train_batch_size=8,
        learning_rate=2e-4,
        logging_steps=10,
        max_length=max_seq_length,
        report_to=[],
        save_strategy="no",
        use_cpu=not torch.cuda.is_available(),  # TRL turns bf16 on by default; on a CPU-only machine say so
    ),
)
trainer.train()

FastLanguageModel.for_inference(model)
prompt = tokenizer.apply_chat_template([{"role": "user", "content": "서울은 어떤 곳인가요?"}],
                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)
answer = model.generate(**prompt.to(model.device), max_new_tokens=24, do_sample=False)
print(tokenizer.decode(answer[0][prompt["input_ids"].shape[1]:], skip_special_tokens=True))
