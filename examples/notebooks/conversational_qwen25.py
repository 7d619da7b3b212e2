# An Unsloth conversational notebook's shape (Qwen 2.5 / Qwen 3): data in any common chat layout through
# standardize_data_formats, the qwen-2.5 template, SFTConfig, loss on the answers only, then every save cell.
# Run it in a folder holding conversations.jsonl.

# %% Load the model in 4-bit
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel
import torch

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/Qwen2.5-7B-Instruct"
    max_seq_length = 2048,
    load_in_4bit = True,
    load_in_8bit = False,
    full_finetuning = False,
)
model = FastLanguageModel.get_peft_model(
    model,
    r = 32,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 32,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = "unsloth",
    random_state = 3407,
)

# %% Data
from attnpick.chat_templates import get_chat_template, standardize_data_formats

tokenizer = get_chat_template(tokenizer, chat_template = "qwen-2.5")
from datasets import load_dataset
dataset = load_dataset("json", data_files = "conversations.jsonl", split = "train")
dataset = standardize_data_formats(dataset)

def formatting_prompts_func(examples):
    convos = examples["conversations"]
    texts = [tokenizer.apply_chat_template(convo, tokenize = False, add_generation_prompt = False) for convo in convos]
    return {"text": texts}

dataset = dataset.map(formatting_prompts_func, batched = True)

# %% Train
from trl import SFTTrainer, SFTConfig

trainer = SFTTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    eval_dataset = None,
    args = SFTConfig(
        dataset_text_field = "text",
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 4,
        warmup_steps = 5,
        max_steps = 3,
        learning_rate = 2e-4,
        logging_steps = 1,
        optim = "adamw_8bit",
        weight_decay = 0.01,
        lr_scheduler_type = "linear",
        seed = 3407,
        report_to = "none",
    ),
)
from attnpick.chat_templates import train_on_responses_only
trainer = train_on_responses_only(
    trainer,
    instruction_part = "<|im_start|>user\n",
    response_part = "<|im_start|>assistant\n",
)
trainer_stats = trainer.train()

# %% Inference
messages = [{"role": "user", "content": "Continue the sequence: 1, 1, 2, 3, 5, 8,"}]
text = tokenizer.apply_chat_template(messages, tokenize = False, add_generation_prompt = True)
from transformers import TextStreamer
_ = model.generate(
    **tokenizer(text, return_tensors = "pt").to(model.device),
    max_new_tokens = 32, temperature = 0.7, top_p = 0.8, top_k = 20,
    streamer = TextStreamer(tokenizer, skip_prompt = True),
)

# %% Save
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
if True:
    model, tokenizer = FastLanguageModel.from_pretrained(model_name = "lora_model", max_seq_length = 2048,
                                                         load_in_4bit = True)
if True: model.save_pretrained_merged("model", tokenizer, save_method = "merged_16bit")
if False: model.push_to_hub_merged("hf/model", tokenizer, save_method = "merged_16bit", token = "")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = ["q8_0", "f16"])
