# An older Unsloth conversational notebook's shape (Phi-3 / Mistral): ShareGPT turns read through get_chat_template's
# `mapping` (no standardize step), SFTTrainer with TrainingArguments, then every save cell.
# Run it in a folder holding conversations.jsonl ({"conversations": [{"from": "human", "value": ...}, ...]}).

# %% Load the model in 4-bit
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel
import torch

max_seq_length = 2048
dtype = None
load_in_4bit = True

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/Phi-3.5-mini-instruct"
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

# %% Data: the template reads ShareGPT's keys through `mapping`
from attnpick.chat_templates import get_chat_template

tokenizer = get_chat_template(
    tokenizer,
    chat_template = "phi-3",
    mapping = {"role": "from", "content": "value", "user": "human", "assistant": "gpt"},
)

def formatting_prompts_func(examples):
    convos = examples["conversations"]
    texts = [tokenizer.apply_chat_template(convo, tokenize = False, add_generation_prompt = False) for convo in convos]
    return {"text": texts}

from datasets import load_dataset
dataset = load_dataset("json", data_files = "conversations.jsonl", split = "train")
dataset = dataset.map(formatting_prompts_func, batched = True)

# %% Train
from trl import SFTTrainer
from transformers import TrainingArguments
from attnpick import is_bfloat16_supported

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

# %% Inference, with the ShareGPT keys the mapping reads
FastLanguageModel.for_inference(model)
messages = [{"from": "human", "value": "Continue the fibonnaci sequence: 1, 1, 2, 3, 5, 8,"}]
inputs = tokenizer.apply_chat_template(
    messages, tokenize = True, add_generation_prompt = True, return_tensors = "pt", return_dict = False,
).to(model.device)
outputs = model.generate(input_ids = inputs, max_new_tokens = 32, use_cache = True)
print(tokenizer.batch_decode(outputs))

# %% Save
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
if True:
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name = "lora_model", max_seq_length = max_seq_length, dtype = dtype, load_in_4bit = load_in_4bit,
    )
    FastLanguageModel.for_inference(model)
if True: model.save_pretrained_merged("model", tokenizer, save_method = "merged_16bit")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = "q8_0")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = "f16")
