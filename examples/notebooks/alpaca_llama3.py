# An Unsloth Alpaca notebook's shape (Llama 3.1 / Qwen 2.5 / Gemma 2): an Alpaca prompt ending in the EOS token,
# SFTTrainer with TrainingArguments and is_bfloat16_supported(), then every save cell.
# Run it in a folder holding alpaca.jsonl ({"instruction": ..., "input": ..., "output": ...} rows).

# %% Load the model in 4-bit
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel
import torch

max_seq_length = 2048
dtype = None
load_in_4bit = True

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/Meta-Llama-3.1-8B"
    max_seq_length = max_seq_length,
    dtype = dtype,
    load_in_4bit = load_in_4bit,
)
model = FastLanguageModel.get_peft_model(
    model,
    r = 16,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 16,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = "unsloth",
    random_state = 3407,
)

# %% Data: the Alpaca prompt
alpaca_prompt = """Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

### Instruction:
{}

### Input:
{}

### Response:
{}"""

EOS_TOKEN = tokenizer.eos_token
def formatting_prompts_func(examples):
    texts = []
    for instruction, input, output in zip(examples["instruction"], examples["input"], examples["output"]):
        texts.append(alpaca_prompt.format(instruction, input, output) + EOS_TOKEN)
    return {"text": texts}

from datasets import load_dataset
dataset = load_dataset("json", data_files = "alpaca.jsonl", split = "train")
dataset = dataset.map(formatting_prompts_func, batched = True)

# %% Train
from trl import SFTTrainer
from transformers import TrainingArguments
from attnpick import is_bfloat16_supported  # was: from unsloth import is_bfloat16_supported

trainer = SFTTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    dataset_text_field = "text",
    max_seq_length = max_seq_length,
    dataset_num_proc = 2,
    packing = False,
    args = TrainingArguments(
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 4,
        warmup_steps = 5,
        max_steps = 3,
        learning_rate = 2e-4,
        fp16 = not is_bfloat16_supported(),
        bf16 = is_bfloat16_supported(),
        logging_steps = 1,
        optim = "adamw_8bit",
        weight_decay = 0.01,
        lr_scheduler_type = "linear",
        seed = 3407,
        output_dir = "outputs",
        report_to = "none",
    ),
)
trainer_stats = trainer.train()

# %% Inference
FastLanguageModel.for_inference(model)
inputs = tokenizer(
    [alpaca_prompt.format("Continue the fibonnaci sequence.", "1, 1, 2, 3, 5, 8", "")], return_tensors = "pt",
).to(model.device)
outputs = model.generate(**inputs, max_new_tokens = 32, use_cache = True)
print(tokenizer.batch_decode(outputs))

# %% Save the LoRA, load it again, save merged and GGUF
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
if True:
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name = "lora_model",
        max_seq_length = max_seq_length,
        dtype = dtype,
        load_in_4bit = load_in_4bit,
    )
    FastLanguageModel.for_inference(model)
    inputs = tokenizer([alpaca_prompt.format("What is a famous tall tower in Paris?", "", "")],
                       return_tensors = "pt").to(model.device)
    from transformers import TextStreamer
    _ = model.generate(**inputs, streamer = TextStreamer(tokenizer), max_new_tokens = 32)

if True: model.save_pretrained_merged("model", tokenizer, save_method = "merged_16bit")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = "q8_0")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = "f16")
if False: model.save_pretrained_gguf("model", tokenizer, quantization_method = "q4_k_m")
